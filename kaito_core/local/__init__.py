"""`kaito run`: a Workspace executed as local processes on this machine.

The pieces, each with one job:

- ``paths``    where local state lives (``$KAITO_HOME``, default ``~/.cache/kaito``)
- ``procs``    process identity (pid + start time), liveness, and stopping a process
- ``state``    the record of each run under ``$KAITO_HOME/runs/<name>/`` for ``kaito ps/stop/logs``
- ``ports``    checking a port is free before the model is started
- ``prepare``  Workspace file -> validated Workspace -> Plan for this machine's hardware
- ``weights``  the model directory the runtime serves: from a registry artifact or the local OCI store
- ``launch``   the ``kaito serve`` child process: argv, start, wait for ``/health``, signal forwarding

Modules import their heavy dependencies lazily so that ``kaito run`` starts fast.
"""
