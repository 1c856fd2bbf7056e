"""The limits and policies of one ``octopus serve`` (docs/server.md, *Limits*), in one
place both the I/O layer (:mod:`octopus.server.server`) and the command layer
(:mod:`octopus.server.commands`) read. Every default is documented there."""

from __future__ import annotations

from dataclasses import dataclass

from octopus.query.parser import DEFAULT_MAX_LENGTH

__all__ = ["ServerConfig"]


@dataclass
class ServerConfig:
    """Limits and policies of one server (the defaults are docs/server.md's)."""

    password: str | None = None          # --requirepass: AUTH needed before any command
    max_clients: int = 10000             # connections beyond are refused with an error
    workers: int = 32                    # threads that may run engine calls (one is awake
                                         # while calls are short; a replica's writes wait)

    # --- input ---------------------------------------------------------------------------
    max_args: int = 65536                # arguments in one command
    max_bulk: int = 1 << 20              # bytes in one argument
    max_request: int = 4 << 20           # bytes in one command
    max_inline: int = 64 << 10           # bytes in one inline command line
    max_pipeline: int = 1024             # parsed, unanswered commands per connection
    # Query text is parsed by the server (to type its parameters) only up to this length;
    # keep it equal to the engine's max_query_length (longer text is refused either way).
    max_query_length: int = DEFAULT_MAX_LENGTH
    unauth_max_args: int = 10            # the same three before AUTH (with a password)
    unauth_max_bulk: int = 16 << 10
    unauth_max_inline: int = 16 << 10

    # --- output (like Redis's client-output-buffer-limit and maxmemory) ------------------
    # "pubsub" connections have a trigger or subscription (events are pushed to them and
    # cannot wait); "normal" ones do not (their replies are bounded by backpressure).
    # 0 disables a limit. A soft limit drops a connection that stays above it for
    # ``*_soft_seconds``; a hard limit drops it at once.
    output_limit: int = 32 << 20         # --output-limit: pubsub hard limit
    output_soft_limit: int = 8 << 20     # pubsub soft limit ...
    output_soft_seconds: float = 60.0    # ... held this long
    normal_output_limit: int = 0
    normal_output_soft_limit: int = 0
    normal_output_soft_seconds: float = 0.0
    output_memory_limit: int = 128 << 20  # all connections together: largest dropped first

    # --- commands --------------------------------------------------------------------------
    reply_cache: int = 1 << 18           # GET replies kept until their records change (0: off)
    reply_cache_bytes: int = 64 << 20    # ... and their bytes (keys included), LRU
    max_triggers: int = 10000            # triggers + subscriptions per connection (0: none)
    auth_failure_delay: float = 0.5      # seconds before a failed AUTH is answered ...
    auth_failures_per_second: float = 20.0  # ... and at most this many answered per second

    # --- sessions that outlive a blip (octopus.server.sessions) ----------------------------
    session_timeout: float = 5.0         # a resumable session's timeout if the client asks none
    max_session_timeout: float = 60.0    # the most a client may ask for
    min_session_timeout: float = 0.1     # the least (shorter asks are raised to it)
    session_replay_bytes: int = 4 << 20  # event frames kept per resumable session
