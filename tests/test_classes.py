"""Class names: ImageNet WordNet ids become words, other folder names stay as they are."""

from __future__ import annotations

from pipeline.classes import human_names, imagenet_names


def test_the_table_names_the_thousand_imagenet_classes_in_id_order():
    names = imagenet_names()
    assert len(names) == 1000 and list(names) == sorted(names)
    assert names["n01440764"] == "tench" and names["n15075141"] == "toilet tissue"


def test_ids_among_other_folders_are_still_named():
    assert human_names(["n01443537", "extras", "n99999999"]) == ["goldfish", "extras", "n99999999"]
    assert human_names(["nose", "n1x"]) == ["nose", "n1x"]
