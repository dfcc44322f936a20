"""The writing system of a word, from its characters (the `words.script` column).

Each character's Unicode Script property comes from fontTools' copy of the Unicode Character Database
(`fontTools.unicodedata.script`; fontTools is already installed with matplotlib). Characters of the
Common and Inherited scripts (digits, punctuation, symbols, spaces, combining accents, the prolonged
sound mark ー) say nothing about the script and are left out. Then, for the characters that remain:

- none (digits, punctuation, symbols only): `Common`;
- one script: its Unicode name (`Latin`, `Greek`, `Cyrillic`, `Han`, `Arabic`, `Hebrew`, `Hangul`,
  `Hiragana`, `Katakana`, `Devanagari`, `Thai`, ...);
- kana with or without Han (ISO 15924 Jpan): `Japanese`; Hangul with Han (ISO 15924 Kore): `Korean`;
- Latin with Greek or Cyrillic where every Latin letter is a look-alike of that script (`ΣTAΣH`,
  `ΛAXANIKA`): that script. The recogniser's charset has both the Latin and the Greek capitals A, B, E,
  H, ..., and reads capital Greek words with Latin ones in them; a word with a real Greek letter and only
  look-alike Latin ones is Greek. A word of look-alikes only (`TABEPNA`) stays Latin: nothing tells;
- any other mix (`Wi-Fiзона`): `Mixed`.

Unassigned and private-use code points count as the script `Unknown`. Full-width Latin letters are Latin.
"""

from __future__ import annotations

from functools import lru_cache

from fontTools import unicodedata as ucd

COMMON = "Common"
MIXED = "Mixed"
JAPANESE = "Japanese"
KOREAN = "Korean"

_NEUTRAL = frozenset({"Zyyy", "Zinh"})  # Common, Inherited
_JAPANESE = frozenset({"Hani", "Hira", "Kana"})
_KANA = frozenset({"Hira", "Kana"})
_KOREAN = frozenset({"Hani", "Hang"})
# Latin letters drawn like a letter of another script (capitals as in DejaVu; a few lower-case ones).
_LATIN_LOOKALIKES = {
    "Grek": frozenset("ABEZHIKMNOPTYXopikvuxy"),
    "Cyrl": frozenset("ABCEHKMOPTXYaceopxy"),
}


def char_script(char: str) -> str:
    """ISO 15924 code of one character's Unicode Script property (`Latn`, `Zyyy` for Common, ...)."""
    return ucd.script(char)


@lru_cache(maxsize=65_536)  # words repeat a lot across a shard
def script_of(text: str) -> str:
    """The script of a word, by the rules in this module's docstring."""
    codes = {char_script(c) for c in text} - _NEUTRAL
    if not codes:
        return COMMON
    if len(codes) == 1:
        return ucd.script_name(next(iter(codes)))
    if codes <= _JAPANESE and codes & _KANA:
        return JAPANESE
    if codes == _KOREAN:
        return KOREAN
    for other, lookalikes in _LATIN_LOOKALIKES.items():
        if codes == {"Latn", other} and all(c in lookalikes for c in text if char_script(c) == "Latn"):
            return ucd.script_name(other)
    return MIXED
