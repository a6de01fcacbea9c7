"""The cabinet: the REST API and the web console for subscribers and the NOC.

It sits above the stores and the records (it reads and loads configs, reads history) and below
the CLI, which starts it."""
