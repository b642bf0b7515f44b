"""Entry points that regenerate the paper's figures and tables: `python -m reproduce.<name>`."""
