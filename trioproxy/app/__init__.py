"""The process glue: the command, running a process, workers and their supervisor, the log writer.

May import every layer below it (`core`, `config`, `engine`); this file imports nothing, so the
supervisor's modules load without trio.
"""
