"""The applications built on the runtime library: the `mnet` command line (cli, console), the batch runner
behind `mnet run`, `mnet bench`, `mnet doctor`, the precision advice and `mnet audit replay`. Nothing in the
library, report/, audit/, abcde/, backends/, explain/ or serving/ imports this folder."""
