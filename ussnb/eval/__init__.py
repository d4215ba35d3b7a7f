"""Evaluation (the structure issue regroups metrics and the paper's protocol here): ``detection`` measures how
hierarchical separation finds sounds per ontology level and calibrates its thresholds."""
