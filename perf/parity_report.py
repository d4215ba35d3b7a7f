"""Print the max abs errors of the ussnb re-implementations against the reference vectors.

    python perf/parity_report.py [--shared PATH]

PATH defaults to $USSNB_SHARED or ../shared beside the repository (the folder holding ``reference/`` and
``weights/``). Tolerances are those of ``reference/README.md``.
"""
from __future__ import annotations

import argparse
import json
import os
from pathlib import Path

import numpy as np
import torch

from ussnb.features import EfficientATMel, PannsLogMel
from ussnb.taggers.efficientat import load_efficientat
from ussnb.taggers.panns import MODELS, load_panns

TOLERANCES = {
    "panns_cnn10.clipwise_output": 1e-5, "panns_cnn10.embedding": 1e-5, "panns_cnn10.logmel": 2e-3,
    "efficientat_mn04.mel": 2e-4, "efficientat_mn04.logits": 1e-4, "efficientat_mn04.probs": 1e-5,
    "efficientat_mn04.features": 5e-5,
}


def max_abs(a: torch.Tensor, b: np.ndarray) -> float:
    return float(np.abs(a.detach().numpy() - b).max())


def main() -> int:
    default = os.environ.get("USSNB_SHARED") or str(Path(__file__).resolve().parents[1].parent / "shared")
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shared", default=default)
    ref = Path(parser.parse_args().shared) / "reference"
    torch.set_num_threads(2)
    errors: dict[str, float] = {}

    z = np.load(ref / "panns_cnn10" / "io.npz")
    cnn10 = load_panns("Cnn10", path=ref / "panns_cnn10" / "state_dict.pt")
    with torch.inference_mode():
        wave = torch.from_numpy(z["waveform"])
        out = cnn10(wave)
        errors["panns_cnn10.clipwise_output"] = max_abs(out["clipwise_output"], z["clipwise_output"])
        errors["panns_cnn10.embedding"] = max_abs(out["embedding"], z["embedding"])
        errors["panns_cnn10.logmel"] = max_abs(PannsLogMel()(wave), z["logmel"])

    for name, file in [("Cnn14", "panns_cnn14_manifest.json"),
                       ("Cnn14_DecisionLevelMax", "panns_cnn14_decisionlevelmax_manifest.json")]:
        manifest = json.loads((ref / file).read_text())
        model = MODELS[name]()
        keys = [[k, list(v.shape), str(v.dtype).removeprefix("torch.")] for k, v in model.state_dict().items()]
        trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
        print(f"{name}: state-dict key/shape/dtype list equals manifest: {keys == manifest['state_dict']}; "
              f"trainable parameters {trainable:,} (manifest {manifest['trainable_params']:,})")

    z = np.load(ref / "efficientat_mn04" / "io.npz")
    mn04 = load_efficientat("mn04_as", path=ref.parent / "weights" / "mn04_as_mAP_432.pt")
    with torch.inference_mode():
        mel = EfficientATMel()(torch.from_numpy(z["waveform"]))
        logits, features = mn04(mel)
    errors["efficientat_mn04.mel"] = max_abs(mel, z["mel"])
    errors["efficientat_mn04.logits"] = max_abs(logits, z["logits"])
    errors["efficientat_mn04.probs"] = max_abs(torch.sigmoid(logits), z["probs"])
    errors["efficientat_mn04.features"] = max_abs(features, z["features"])

    ok = True
    print(f"\n{'array':32s} {'max abs error':>14s} {'tolerance':>10s}")
    for key, err in errors.items():
        passed = err <= TOLERANCES[key]
        ok &= passed
        print(f"{key:32s} {err:14.3g} {TOLERANCES[key]:10.0e}  {'ok' if passed else 'FAIL'}")
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
