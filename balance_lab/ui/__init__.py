"""`balance-lab ui`: the real MLflow server on the store the other commands use.

server.py      start it (the store's URI, a free port, MLflow's job execution off), list what it holds
guard.py       a watcher process that stops the server when balance-lab dies
port_owner.py  who holds a busy port, and a process group's members

May import: the store (which experiments it holds) and the shared leaves. The `ui` command builds on it.
"""
