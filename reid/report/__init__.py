"""Reports: results tables, plots and ranked-list pictures."""
