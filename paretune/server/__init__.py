"""The team server (`paretune serve`): SigOpt's REST API and the dashboard over one DuckDB file."""
