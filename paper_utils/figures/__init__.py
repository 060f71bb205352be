"""One module per notebook: that figure's runs, claims and plot. A notebook imports its module and
tells the story in a few short calls."""
