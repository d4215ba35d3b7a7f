"""Evaluation: ``metrics`` holds the separation and tagging metrics (SDR, oracle masks, mAP, AUC, segment F1);
``protocol`` runs a trained separator on the test sets (the paper's §4 protocol, zero-shot seen / unseen);
``detection`` measures how hierarchical separation finds sounds per ontology level and calibrates its
thresholds."""
