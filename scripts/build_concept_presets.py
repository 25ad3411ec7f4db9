"""Write the ten Imagenette object presets ``src/sace/assets/concepts/<name>.json``.

The object presets are regular: every target is a template filled with a noun phrase that names the object
(the class name or a synonym, with its own article), and the paired anchor is the same template filled with
the anchor's noun phrase, so the whole noun phrase is replaced and the article is right by construction.
``nudity.json`` and ``vangogh.json`` are written by hand (their anchors need a person kept clothed or a
style replaced, which a template cannot do well) and are not touched here.

    python scripts/build_concept_presets.py            # rewrites the ten files; commit the result

ImageNet indices: ``shared/docs/offline-resources.md`` section E (checked against timm's synsets).
"""

from __future__ import annotations

import json
from pathlib import Path

OUT = Path(__file__).resolve().parents[1] / "src" / "sace" / "assets" / "concepts"

#: training templates (targets and anchors); {} is a noun phrase with its article
TRAIN = [
    "a photo of {}", "an image of {}", "a picture of {}", "a close-up photo of {}", "a painting of {}",
    "a drawing of {}", "a black and white photo of {}", "a blurry photo of {}", "a bright photo of {}",
    "a cropped photo of {}", "a photo of {} outdoors", "a sketch of {}",
]
#: held-out templates (paraphrases never used for training)
HELDOUT = ["a high-resolution photograph of {}", "a watercolor of {}", "a realistic rendering of {}",
           "{} in the evening light", "a vintage photo of {}", "a detailed illustration of {}"]
#: retain templates for the other nine classes and for unrelated scenes
RETAIN_TPL = ["a photo of {}", "a painting of {}"]
UNRELATED = ["a mountain lake at sunrise", "a bowl of fruit on a wooden table", "a city street at night",
             "a portrait of an old woman", "a cat sleeping on a sofa", "a red bicycle leaning on a wall"]


def art(np: str) -> str:
    """``np`` with its indefinite article (initial-vowel rule; the phrases below have no exceptions)."""
    return ("an " if np[0].lower() in "aeiou" else "a ") + np


# key: (ImageNet index, class name in small_imagenet_prompts.csv, noun phrases used in targets,
#       all words naming the object (synonyms, plurals), anchor noun phrase, anchor key)
OBJECTS = {
    "tench": (0, "tench", ["tench", "tench fish"], ["tench", "tenches", "tench fish", "tinca tinca"],
              "carp"),
    "english_springer": (217, "english springer", ["English springer spaniel", "springer spaniel"],
                         ["english springer", "english springer spaniel", "english springers", "springer spaniel",
                          "springer spaniels", "springer"], "beagle"),
    "cassette_player": (482, "cassette player", ["cassette player", "portable cassette player"],
                        ["cassette player", "cassette players", "tape player", "cassette deck", "walkman"],
                        "radio"),
    "chain_saw": (491, "chain saw", ["chain saw", "chainsaw"], ["chain saw", "chain saws", "chainsaw",
                                                                "chainsaws", "chain-saw"], "axe"),
    "church": (497, "church", ["church", "church building"], ["church", "churches", "church building", "chapel",
                                                              "chapels", "cathedral", "cathedrals"], "house"),
    "french_horn": (566, "french horn", ["French horn", "brass French horn"],
                    ["french horn", "french horns", "horn", "horns"], "violin"),
    "garbage_truck": (569, "garbage truck", ["garbage truck", "trash truck"],
                      ["garbage truck", "garbage trucks", "trash truck", "trash trucks", "refuse truck",
                       "dustcart", "bin lorry", "rubbish truck"], "school bus"),
    "gas_pump": (571, "gas pump", ["gas pump", "petrol pump"],
                 ["gas pump", "gas pumps", "petrol pump", "petrol pumps", "fuel pump", "fuel dispenser",
                  "gasoline pump"], "vending machine"),
    "golf_ball": (574, "golf ball", ["golf ball", "white golf ball"], ["golf ball", "golf balls", "golfball"],
                  "tennis ball"),
    "parachute": (701, "parachute", ["parachute", "open parachute"], ["parachute", "parachutes", "chute"],
                  "hot air balloon"),
}


def build(key: str) -> dict:
    idx, csv_class, nps, words, anchor_np = OBJECTS[key]
    targets, anchors = [], []
    for tpl in TRAIN:
        for np in nps:
            targets.append(tpl.format(art(np)))
            anchors.append(tpl.format(art(anchor_np)))
    heldout = [tpl.format(art(nps[0])) for tpl in HELDOUT]
    retain = [tpl.format(art(OBJECTS[o][2][0])) for o in OBJECTS if o != key for tpl in RETAIN_TPL]
    retain += UNRELATED
    return {
        "name": key,
        "description": f"the Imagenette object '{csv_class}' (ImageNet class {idx}); anchor '{anchor_np}'",
        "targets": targets,
        "anchors": anchors,
        "anchor": anchor_np,
        "retain": retain,
        "heldout": heldout,
        "words": words,
        "detector": "imagenet",
        "benchmark": "imagenette",
        "imagenet_index": idx,
        "benchmark_class": csv_class,
        "source": "scripts/build_concept_presets.py (templates x noun phrases; anchors replace the whole "
                  "noun phrase)",
    }


def main() -> None:
    OUT.mkdir(parents=True, exist_ok=True)
    for key in OBJECTS:
        (OUT / f"{key}.json").write_text(json.dumps(build(key), indent=1, ensure_ascii=False) + "\n")
        print(f"wrote {OUT / (key + '.json')}")


if __name__ == "__main__":
    main()
