"""Noun phrases ("entities") of a caption, for the mask-entity association (MEA).

The paper extracts entities from the captions with a parser; no parser model can be fetched here,
so this is a small rule-based chunker over closed word classes, which suits the short, object-
centred captions a 2D captioner produces ("a red mug with a handle on the table"):

1. lower-case, keep letters/digits/hyphens/apostrophes; split on punctuation into clauses;
2. inside a clause, split at prepositions, conjunctions, relative pronouns and the common verbs of
   captions (is, sitting, placed, ...): each remaining run of words is a chunk candidate;
   a word of the verb list right after a determiner or adjective is taken as a noun ("a red can");
3. drop leading words that cannot start a noun phrase (adverbs like "there", auxiliaries) and
   keep a chunk only if its last word is not a determiner/adjective-only word ("a", "the", "some",
   "red"...) i.e. it ends in a likely noun;
4. deduplicate, in order of appearance. Determiners stay ("a handle"), as in the synthetic
   captions' ground-truth phrases.

It is a heuristic: verbs outside the list or noun-noun compounds split oddly. Captions given with
their phrases (synthetic scenes) bypass it.
"""

from __future__ import annotations

import re

PREPOSITIONS = frozenset(
    """
about above across after against along alongside amid among around as at atop before behind below beneath
beside besides between beyond by close down during except for from in inside into like near next of off on
onto opposite out outside over past per through throughout to toward towards under underneath unlike until
up upon via with within without
""".split()
)
CONJUNCTIONS = frozenset(
    "and or but nor so yet while whereas because although though if than".split()
)
RELATIVES = frozenset("that which who whom whose where when".split())
VERBS = frozenset(
    """
is are was were be been being am has have had having do does did can could may might must shall should will
would sits sit sitting sat stands stand standing stood lies lie lying lay rests rest resting placed place
placing put located positioned hangs hanging hung leaning leans contains containing holds holding filled
covered made shows showing appears appear looks look seems seem there here
""".split()
)
DETERMINERS = frozenset(
    "a an the this that these those some any each every another its their his her my our "
    "your one two three four five several many few".split()
)
# Words that describe but never end a noun phrase in these captions.
NON_HEAD_WORDS = DETERMINERS | frozenset(
    """
red green blue yellow orange purple pink white black gray grey brown silver golden gold dark light bright
small large big little tall short long wide round square flat empty full open closed wooden plastic metal
metallic glass ceramic old new shiny
""".split()
)
_BREAK_WORDS = PREPOSITIONS | CONJUNCTIONS | RELATIVES | VERBS


def noun_phrases(caption: str) -> list[str]:
    """The caption's noun phrases in order of appearance (see the module docstring)."""
    phrases: list[str] = []
    for clause in re.split(r"[.,;:!?()\[\]\"]+", caption.lower()):
        words = re.findall(r"[a-z0-9][a-z0-9'\-]*", clause)
        chunk: list[str] = []
        for word in words + [None]:
            # "a red can", "a music stand": a verb-list word right after a determiner or an
            # adjective is read as the noun it also is.
            as_noun = word in VERBS and bool(chunk) and chunk[-1] in NON_HEAD_WORDS
            if word is None or (word in _BREAK_WORDS and not as_noun):
                if chunk and chunk[-1] not in NON_HEAD_WORDS:
                    phrases.append(" ".join(chunk))
                chunk = []
            else:
                chunk.append(word)
    return list(dict.fromkeys(phrases))
