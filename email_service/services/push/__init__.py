"""Push: watchers hold IMAP IDLE/NOTIFY connections and queue a folder sync per change.

- ``pending``: at most one queued sync per account and folder (Redis, or memory embedded)
- ``leases``: which watcher holds which account (Redis leases, or this process alone)
- ``accounts``: the accounts to watch and their logins (credentials decrypted here only)
- ``watch``: one account's connection: IDLE, reconnect with jittered back-off
- ``supervisor``: the loop of one watcher process: leases, fair share, metrics
- ``folder_sync``: the job a change queues (runs in a worker, or the embedded runner)
"""
