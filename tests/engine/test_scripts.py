"""`engine/scripts.py`: each word gets the script it is written in."""

from __future__ import annotations

import pytest

from wildocr.engine.scripts import script_of


@pytest.mark.parametrize(
    ("text", "script"),
    [
        ("OPEN", "Latin"),
        ("café", "Latin"),
        ("Ｃａｆｅ", "Latin"),
        ("ΚΑΦΕΣ", "Greek"),
        ("αγορα", "Greek"),
        ("ΣTAΣH", "Greek"),  # capital Greek read with Latin look-alikes
        ("ψαpiα", "Greek"),
        ("ХЛЕБ", "Cyrillic"),
        ("AПTEKA", "Cyrillic"),
        ("日本", "Han"),
        ("ひらがな", "Hiragana"),
        ("カタカナ", "Katakana"),
        ("東京タワー", "Japanese"),
        ("漢字かな", "Japanese"),
        ("한국어", "Hangul"),
        ("韓國어", "Korean"),
        ("مرحبا", "Arabic"),
        ("שלום", "Hebrew"),
        ("नमस्ते", "Devanagari"),
        ("สวัสดี", "Thai"),
        ("12:30", "Common"),
        ("$4.99", "Common"),
        ("-", "Common"),
        ("Wi-Fiзона", "Mixed"),
        ("Ωmega", "Mixed"),
        ("TABEPNA", "Latin"),  # look-alikes only: nothing says Greek
        ("\ue000", "Unknown"),
    ],
)
def test_script_of_words(text, script):
    assert script_of(text) == script


def test_every_recogniser_character_has_a_known_script(ocr_engine):
    """The recogniser's charset (read from the real model) maps into named scripts, never Unknown."""

    charset = ocr_engine.recognizer.charset
    scripts = {script_of(c) for c in charset[1:] if c.strip()}
    assert "Unknown" not in scripts
    assert {"Latin", "Greek", "Han", "Hiragana", "Katakana", "Common"} <= scripts
