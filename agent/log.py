import logging

logger = logging.getLogger("agent")
