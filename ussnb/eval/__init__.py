"""Evaluation (the structure issue regroups the paper's protocol here too): ``metrics`` holds the separation and
tagging metrics (SDR, oracle masks, mAP, AUC, segment F1); ``detection`` measures how hierarchical separation
finds sounds per ontology level and calibrates its thresholds."""
