"""The job-process side of the shared inference process (agent/inference/): its wire
protocol, the client, and engines that forward to it."""
