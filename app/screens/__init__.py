"""One module per screen of the main window (Datasets, New run, Training, Runs, Export, Settings)."""
