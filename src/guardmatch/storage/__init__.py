"""Storage: everything guardmatch writes that can hold harmful text, and how it is read back.

Modules, one concept each (import from them directly; the records layer that reads and writes
row files on top of them is :mod:`guardmatch.data.records`):

``files``    owner-only files and directories (0600 / 0700 whatever the umask), atomic writes, the
             cache root (``$GUARDMATCH_CACHE_DIR`` or ``~/.cache/guardmatch``).
``crypto``   optional encryption at rest (Fernet; ``$GUARDMATCH_ENCRYPTION_KEY``, rotation).
``audit``    the audit log of exports, ingests and purges.
``lineage``  the derived-data registry and ``purge``.

Not covered (say so to users): purge unlinks files but cannot scrub disk blocks, snapshots or
backups (encrypt at rest and destroy the key for that: crypto-shredding); SQLite databases (review
store, ingest state) are 0600 but not encrypted; data in memory, in logs of other tools, or copied
elsewhere by the user is outside guardmatch's reach; file modes do not protect against root.
"""
