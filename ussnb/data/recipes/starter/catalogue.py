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
#: One sentence per starter class, in the kit's own words (not AudioSet's descriptions): what a text query
#: (``ussnb separate --text``, ``ussnb labels --text``) is matched against besides the name when only the
#: mini-ontology is at hand. ``tools/make_mini_ontology.py`` writes them into ``ussnb/resources/mini_ontology.json``.
STARTER_DESCRIPTIONS: dict[str, str] = {
    "/m/0bm02": "A large drum struck with a beater, usually from a foot pedal, giving the deep low thump that "
                "marks the beat in a drum kit or a marching band.",
    "/m/06rvn": "A shallow drum with wires stretched across its lower head that give each stroke a sharp, crisp "
                "rattle, played with sticks on the backbeat or in rolls.",
    "/m/03qtq": "A pair of cymbals on a stand, closed by a foot pedal and played with sticks, heard as short "
                "ticking or sizzling open strokes that keep time.",
    "/m/01qbl": "A thin round bronze plate struck or crashed to give a bright, shimmering metallic ring that dies "
                "away slowly.",
    "/m/07brj": "A small hand-held frame drum with pairs of metal jingles in its rim, shaken or struck for a "
                "jangling rhythm.",
    "/m/01p970": "A pair of Indian hand drums, a small high one and a larger deep one, played with the fingers "
                 "and palms for tuned strokes whose pitch can bend.",
    "/m/05zppz": "Words spoken by an adult man, usually lower in pitch than a woman's or a child's voice.",
    "/m/02zsn": "Words spoken by an adult woman.",
    "/m/0ytgt": "Words spoken in the high, light voice of a young child.",
    "/m/05r5c": "A keyboard instrument whose keys make felt hammers strike tuned strings, heard as struck notes "
                "and chords that ring and fade.",
    "/m/03q5t": "An early keyboard instrument whose keys pluck its strings with small quills, giving a bright, "
                "twangy tone that stops short.",
    "/m/013y1f": "A keyboard instrument that sounds air through pipes, or imitates them electronically, holding "
                 "steady notes and chords for as long as the keys are pressed.",
    "/m/042v_gx": "A hollow-bodied guitar with steel or nylon strings, plucked or strummed with the fingers or a "
                  "pick and heard without electric amplification.",
    "/m/018j2": "A plucked string instrument with a drum-like skin body that gives a bright, twangy, quickly "
                "fading tone, common in folk and bluegrass music.",
    "/m/03m5k": "A large upright frame of many strings plucked with the fingers, giving gentle ringing notes, "
                "chords and sweeping glissandos.",
    "/m/0dwsp": "Percussion instruments made of tuned wooden bars struck with mallets, giving short, woody, "
                "pitched notes.",
    "/m/0dwtp": "A set of tuned steel bars struck with hard mallets, giving high, bell-like notes that ring "
                "clearly.",
    "/m/0l14jd": "A group of singers performing together, often in several voice parts that sing in harmony.",
    "/m/0l14j_": "A woodwind instrument played by blowing across a hole near one end, with a pure, breathy, airy "
                 "tone.",
    "/m/01wy6": "A single-reed woodwind instrument with a straight cylindrical tube, giving a warm, round, "
                "hollow tone.",
    "/m/06ncr": "A single-reed woodwind instrument with a curved metal body and a strong, reedy, expressive tone, "
                "familiar from jazz and popular music.",
    "/m/07gql": "A high brass instrument played by buzzing the lips into a cup mouthpiece and pressing three "
                "valves, giving a bright, piercing tone.",
    "/m/07c6l": "A low brass instrument whose pitch is changed with a sliding tube, giving a broad tone and smooth "
                "glides between notes.",
    "/m/0319l": "A coiled brass instrument with a wide bell, played with one hand in the bell, giving a mellow, "
                "round tone.",
    "/m/07y_7": "The smallest and highest of the bowed string instruments, with four strings played with a bow or "
                "plucked, in classical and folk music alike.",
    "/m/01xqw": "A large bowed string instrument held between the knees and played seated, with a deep, warm "
                "tone below the violin and viola.",
    "/m/02fsn": "The largest and lowest bowed string instrument, played standing, bowed or plucked, giving the "
                "deep bass line of orchestras and jazz bands.",
}
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
