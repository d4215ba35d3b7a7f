"""What the starter set is made of: its classes (AudioSet MIDs), the packages its sounds come from and their
licences, the recipe's constants, and :class:`Candidate`, the one record every source scanner returns."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable

from ....errors import DataError

RECIPE_VERSION = 1
SAMPLE_RATE = 32000
MAX_EVENT_SECONDS = 4.0

# --------------------------------------------------------------------------------------------------------
# classes
# --------------------------------------------------------------------------------------------------------
#: (AudioSet MID, AudioSet display name) of every starter class, in a fixed order.
STARTER_CLASSES: list[tuple[str, str]] = [
    # recorded percussion
    ("/m/0bm02", "Bass drum"),
    ("/m/06rvn", "Snare drum"),
    ("/m/03qtq", "Hi-hat"),
    ("/m/01qbl", "Cymbal"),
    ("/m/07brj", "Tambourine"),
    ("/m/01p970", "Tabla"),
    # recorded speech
    ("/m/05zppz", "Male speech, man speaking"),
    ("/m/02zsn", "Female speech, woman speaking"),
    ("/m/0ytgt", "Child speech, kid speaking"),
    # instruments: music21 parts rendered with FluidR3_GM (+ a few lmms recordings)
    ("/m/05r5c", "Piano"),
    ("/m/03q5t", "Harpsichord"),
    ("/m/013y1f", "Organ"),
    ("/m/042v_gx", "Acoustic guitar"),
    ("/m/018j2", "Banjo"),
    ("/m/03m5k", "Harp"),
    ("/m/0dwsp", "Marimba, xylophone"),
    ("/m/0dwtp", "Glockenspiel"),
    ("/m/0l14jd", "Choir"),
    ("/m/0l14j_", "Flute"),
    ("/m/01wy6", "Clarinet"),
    ("/m/06ncr", "Saxophone"),
    ("/m/07gql", "Trumpet"),
    ("/m/07c6l", "Trombone"),
    ("/m/0319l", "French horn"),
    ("/m/07y_7", "Violin, fiddle"),
    ("/m/01xqw", "Cello"),
    ("/m/02fsn", "Double bass"),
]
NAME_TO_MID = {name: mid for mid, name in STARTER_CLASSES}
_MID_TO_NAME = {mid: name for mid, name in STARTER_CLASSES}

# --------------------------------------------------------------------------------------------------------
# sources
# --------------------------------------------------------------------------------------------------------
RENDER_SOURCE = "music21+fluid-soundfont-gm"

#: Licence of each source (package), as stated in its Debian copyright file / PyPI metadata.
PACKAGE_LICENCES: dict[str, str] = {
    "hydrogen-drumkits": "per kit: GPL-2, GPL-2+, CC-BY-3.0, CC-BY-SA-3.0-US (see the kit rows)",
    "sonic-pi-samples": "CC0-1.0 (freesound.org uploads, listed in samples/README.md)",
    "lmms-common": "GPL-2+",
    "asterisk-core-sounds-en-g722": "CC-BY-SA-3.0 (Allison Smith)",
    "asterisk-core-sounds-es-g722": "CC-BY-SA-3.0 (Allison Smith)",
    "asterisk-core-sounds-fr-g722": "CC-BY-SA-3.0 (June Wallack)",
    "asterisk-core-sounds-it-g722": "CC-BY-3.0 (Carlo Flora)",
    "asterisk-core-sounds-ru-g722": "CC-BY-3.0 (ivrvoice.ru)",
    "klettres-data": "GPL-2+",
    RENDER_SOURCE: "scores: music21 corpus (Bach chorales, public-domain music; music21 BSD-3-Clause); "
                   "samples: FluidR3_GM.sf2 (MIT)",
}


@dataclass
class Candidate:
    """One recording a scanner found (or a render made), before it becomes :class:`~ussnb.data.compose.SourceEvent` s
    (one per excerpt, ``recording = "<group>::<take>"``)."""

    path: str
    label: str
    group: str        # physical source: kit, uploader, speaker, soundfont instrument
    take: str         # the recording inside the group
    source: str       # package
    licence: str
    excerpts: list[tuple[float, float | None]] | None = None
    long_form: bool = False  # a played passage (not a one-shot): cut into several excerpts when long


def select_classes(classes: Iterable[str] | None) -> list[str]:
    """Display names of ``classes`` (names or MIDs; ``None``: every class in :data:`STARTER_CLASSES` order);
    a name that is no starter class is a :class:`DataError`."""
    if classes is None:
        return [name for _, name in STARTER_CLASSES]
    chosen = []
    for c in classes:
        name = _MID_TO_NAME.get(c, c)
        if name not in NAME_TO_MID:
            raise DataError(f"'{c}' is not a starter class; choose from: {', '.join(NAME_TO_MID)}")
        chosen.append(name)
    return chosen
