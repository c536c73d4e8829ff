"""One copy of each model per machine: the shared inference process (``server``), its
wire format (``protocol``), the job processes' client (``client``) and the engines built on
it (``remote``); ``host`` starts and supervises the process for the worker."""
