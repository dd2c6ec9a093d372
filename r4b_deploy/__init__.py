"""r4b-deploy: take a GPU machine to a checked, measured R-4B endpoint on vLLM."""

__version__ = "0.1.0"
