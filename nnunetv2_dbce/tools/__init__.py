"""Tools around the core: the loss study, the evaluator, plans variants, statistics."""
