"""A small mixed archive: the Russian news of tests/serve_corpus.py and the seed article, and ten
English news paragraphs written for these tests (enough for a second model: ten documents)."""

from __future__ import annotations

import json
from pathlib import Path

from serve_corpus import ARTICLES, SEED, SEED_ID

ENGLISH = [
    ("en-cats", "Shelters report more adopted cats",
     "Animal shelters across the city say that adoptions of kittens and older cats rose sharply this winter. "
     "Volunteers credit a campaign that waived fees for families taking home a second pet."),
    ("en-rail", "High-speed rail line approved",
     "Lawmakers approved funding for a high-speed railway between the two largest cities. "
     "Trains are expected to cut the journey to ninety minutes when the line opens in 2031."),
    ("en-vaccine", "New flu vaccine enters trials",
     "Researchers began the final phase of trials for a flu vaccine that targets several strains at once. "
     "Doctors hope a single shot could protect patients for more than one season."),
    ("en-drought", "Farmers struggle with a dry summer",
     "A summer without rain left fields parched and reservoirs half empty. "
     "Growers of corn and soybeans expect smaller harvests and are asking for emergency aid."),
    ("en-chess", "Teenager wins the national chess title",
     "A sixteen-year-old player won the national chess championship after a tense final round. "
     "She defeated the defending champion with a daring queen sacrifice."),
    ("en-bridge", "Old bridge closed for repairs",
     "Engineers closed the century-old river bridge after inspectors found corroded steel beams. "
     "Commuters will use ferries and a detour while crews replace the deck."),
    ("en-museum", "Museum opens a dinosaur hall",
     "The natural history museum unveiled a hall of fossil skeletons, including a complete tyrannosaur. "
     "Children can dig for replica bones in a sandbox beside the exhibit."),
    ("en-startup", "Battery startup raises funding",
     "A young company that builds batteries for electric trucks raised two hundred million dollars. "
     "Investors bet that its cells will charge faster and last longer than rivals'."),
    ("en-storm", "Coastal towns prepare for a hurricane",
     "Residents of coastal towns boarded up windows as a powerful hurricane approached. "
     "Officials ordered evacuations from low-lying neighbourhoods near the shore."),
    ("en-library", "City library extends its hours",
     "The central library will stay open until midnight on weekdays to give students a quiet place to study. "
     "The change follows a petition signed by thousands of readers."),
]


def write(folder: Path) -> Path:
    """The mixed archive as one JSONL file in ``folder``; returns its path."""
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "mixed.jsonl"
    rows = [{"id": i, "title": t, "text": x, "date": d, "source": s} for i, d, s, t, x in ARTICLES]
    rows.append({"id": SEED_ID, "title": "", "text": SEED.read_text(encoding="utf-8")})
    for k in range(2):  # more Russian than English: the archive's main model is navec-ru
        rows += [{"id": f"{i}-{k}", "title": t, "text": f"{x} {x}", "date": d} for i, d, _, t, x in ARTICLES]
    rows += [{"id": i, "title": t, "text": x} for i, t, x in ENGLISH]
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
    return path
