"""What a run leaves for people: the report (markdown, HTML, plots) and the run monitor."""
