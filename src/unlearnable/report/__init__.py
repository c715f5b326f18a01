"""Results as tables, plots, a gallery and the HTML report."""
