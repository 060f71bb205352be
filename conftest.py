"""pytest set-up shared by the unit tests (tests/) and nbval over the notebooks (notebooks/)."""


def pytest_collection_modifyitems(items):
    """nbval waits a hard-coded 5 s for each output message of a cell after its reply; with both cores
    busy that flaked ("Timeout of 5 seconds exceeded waiting for output"). Wait up to 120 s; the
    cell's own timeout is unchanged."""
    for item in items:
        if type(item).__name__ == "IPyNbCell" and hasattr(item, "output_timeout"):
            item.output_timeout = 120
