import json

import numpy as np
import pytest

from ussnb.errors import OntologyError
from ussnb.ontology import Ontology, load_ontology


@pytest.fixture(scope="module")
def onto(shared_dir):
    return Ontology.from_dir(shared_dir / "data" / "audioset")


def test_sizes(onto):
    assert len(onto) == 527
    assert len(onto.top_nodes) == 7
    assert len(onto.nodes_at_level(1)) == 7
    assert {onto.nodes[n]["name"] for n in onto.top_nodes} >= {"Human sounds", "Animal", "Music"}


def test_lookup_case_insensitive_mid_index(onto):
    dog = onto.label("dog")
    assert dog.mid == "/m/0bt9lr" and dog.index == 74
    assert onto.label("/m/0bt9lr") == dog == onto.label(74) == onto.label("74")
    assert onto.path("Bark") == ["Animal", "Domestic animals, pets", "Dog", "Bark"]
    assert onto.level("Bark") == 4 and onto.level("Animal") == 1


def test_unknown_label_lists_closest(onto):
    with pytest.raises(OntologyError, match="closest: 'Guitar'"):
        onto.label("gutiar")


def test_descendants_restricted_to_labels(onto):
    idx = onto.label_descendants("Dog")
    names = {onto.labels[i].name for i in idx}
    assert {"Dog", "Bark", "Howl", "Growling"} <= names
    assert "Cat" not in names


def test_grouping_matches_hand_computation():
    nodes = [
        {"id": "A", "name": "Animal", "child_ids": ["D", "C"]},
        {"id": "D", "name": "Dog", "child_ids": ["B"]},
        {"id": "B", "name": "Bark", "child_ids": []},
        {"id": "C", "name": "Cat", "child_ids": []},
        {"id": "M", "name": "Music", "child_ids": ["G", "B"]},  # B has two parents
        {"id": "G", "name": "Guitar", "child_ids": []},
    ]
    labels = [{"mid": m, "name": n} for m, n in [("A", "Animal"), ("D", "Dog"), ("B", "Bark"), ("C", "Cat"),
                                                  ("G", "Guitar")]]
    onto = Ontology(nodes, labels)
    probs = np.array([[0.1, 0.2, 0.9, 0.3, 0.05],
                      [0.0, 0.4, 0.1, 0.6, 0.7]])
    g1, n1 = onto.group(probs, 1)
    assert n1 == ["A", "M"]
    # Animal = max(A, D, B, C); Music = max(G, B) (Music is not a label itself; B counted under both parents)
    np.testing.assert_allclose(g1, [[0.9, 0.9], [0.6, 0.7]])
    g2, n2 = onto.group(probs, 2)
    assert n2 == ["D", "C", "G", "B"] or set(n2) == {"D", "C", "G", "B"}
    by = dict(zip(n2, g2.T))
    np.testing.assert_allclose(by["D"], [0.9, 0.4])
    np.testing.assert_allclose(by["C"], [0.3, 0.6])
    assert onto.level("B") == 2  # shortest path: Music -> Bark


def test_group_full_ontology_shapes(onto):
    for level in range(1, onto.max_level + 1):
        g, nodes = onto.group(np.random.rand(4, 527), level)
        assert g.shape == (4, len(nodes)) and len(nodes) > 0


def test_zero_byte_and_malformed_refused(tmp_path, shared_dir):
    (tmp_path / "ontology.json").write_bytes(b"")
    (tmp_path / "class_labels_indices.csv").write_text(
        (shared_dir / "data" / "audioset" / "class_labels_indices.csv").read_text())
    with pytest.raises(OntologyError, match="0 bytes"):
        Ontology.from_dir(tmp_path)
    (tmp_path / "ontology.json").write_text("{not json")
    with pytest.raises(OntologyError, match="not valid JSON"):
        Ontology.from_dir(tmp_path)
    (tmp_path / "ontology.json").write_text(json.dumps({"a": 1}))
    with pytest.raises(OntologyError, match="expected a JSON list"):
        Ontology.from_dir(tmp_path)


def test_download_refuses_empty_response(tmp_path, monkeypatch):
    import io
    import urllib.request

    from ussnb import download, ontology

    class Empty(io.BytesIO):
        headers = {}

        def __enter__(self):
            return self

        def __exit__(self, *a):
            return False

    monkeypatch.setattr(urllib.request, "urlopen", lambda url, timeout=0: Empty(b""))
    with pytest.raises(download.DownloadError, match="empty"):
        ontology.download_audioset_meta(tmp_path)
    assert not (tmp_path / "ontology.json").exists()


def test_subset_keeps_order_and_tree(onto):
    sub = onto.subset(["/m/0bt9lr", "/m/01yrx"])  # Dog, Cat
    assert [lab.name for lab in sub.labels] == ["Dog", "Cat"]
    assert sub.labels[0].audioset_index == 74
    g, nodes = sub.group(np.array([[0.2, 0.7]]), 1)
    assert [sub.nodes[n]["name"] for n in nodes] == ["Animal"] and g[0, 0] == pytest.approx(0.7)


def test_load_prefers_env_folder(shared_dir, monkeypatch):
    monkeypatch.setenv("USSNB_AUDIOSET_META", str(shared_dir / "data" / "audioset"))
    assert len(load_ontology()) == 527
