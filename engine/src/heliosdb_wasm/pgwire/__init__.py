"""A PostgreSQL wire-protocol (3.0) endpoint in front of the embedded database.

Design: one listening socket and one thread per client connection (standard
library only). Each connection opens its OWN ``Database`` on the file, in the
thread that serves it, because apsw connections here are used by one thread
only; SQLite's locking (WAL mode, which the server turns on) arbitrates between
them. Every statement a client runs, through the simple or the extended
protocol, goes one at a time through the server's ``executor`` hook with its
final SQL text (``$n`` placeholders already turned into SQLite's ``?n``) and
its bound values; ``execute_statement`` is the default executor. The extended
protocol runs a portal when it is first described or executed and buffers its
rows; its column types are those ``describe`` gives the statement before it
runs, which the rows are then made to keep (``codec.coerce``). The simple
protocol types a column by its declaration where every value fits it, else by
the values.

The modules follow the layers: ``protocol`` (framing), ``codec`` (values and
their types), ``dialect`` (quote-aware scans of SQL text), ``translate``
(PostgreSQL's SQL in SQLite's), ``functions`` and ``catalog`` (PostgreSQL's
built-in functions and ``pg_catalog`` on a client's connection), ``describe``
(types before a statement runs), ``cursors`` and ``copy`` (SQL cursors,
prepared statements and COPY), ``errors`` (SQLSTATEs), ``session`` (limits,
variables, the default executor), ``auth`` (trust and SCRAM-SHA-256 at
startup), ``tls`` (the server's certificate), ``roles`` (CREATE/ALTER/DROP
ROLE), ``connection`` (one client), ``watchdog`` (statement timeouts) and
``server`` (accepting and refusing clients).
docs/pgwire.md says how PostgreSQL's SQL, catalog and types meet SQLite's.

Clients log in as roles of the database with SCRAM-SHA-256 (``auth="scram"``,
the default), or as anyone on a loopback address (``auth="trust"``); TLS
with the operator's certificate (``tls=TlsConfig.load(...)``).

Deliberate differences from PostgreSQL: no pg_hba.conf, no client
certificates, no role membership or privileges (plugins decide); statements
of an extended-protocol pipeline without an explicit BEGIN commit one by one
(SQLite autocommit) instead of as one implicit transaction; SET is not
transactional and SET LOCAL is refused; COPY runs only in the simple protocol,
binary COPY only FROM; the function-call message is not supported.

Hostile clients: ``WireLimits`` bounds what one connection may cost (threads,
time idle or in one statement, message, value and buffered-result sizes), each
limit reported with PostgreSQL's SQLSTATE; docs/security.md explains them.
"""

from .dialect import command_tag, translate_placeholders
from .errors import WireError, sqlstate_for
from .server import Server
from .session import SERVER_VERSION, Executor, WireLimits, WireSession, execute_statement
from .tls import TlsConfig

__all__ = [
    "SERVER_VERSION",
    "Executor",
    "Server",
    "TlsConfig",
    "WireError",
    "WireLimits",
    "WireSession",
    "command_tag",
    "execute_statement",
    "sqlstate_for",
    "translate_placeholders",
]
