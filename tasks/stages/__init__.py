"""The stages of a research job's chain, one module each, in the chain's order."""
