"""What every training job shares: small file helpers, a run's optimiser settings and history, and the graph
finishing that both exporters do. Imports nothing else of ``training``."""
