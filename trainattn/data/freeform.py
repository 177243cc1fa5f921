"""Free-form documents written for the book's "open questions" chapter.

Each holds ONE new (invented) fact, told in ordinary prose with some context
around it, a probe asking for that fact, and the probe's answer. They lie
outside LAMA-CKL's relations (a bridge's designer, a recipe's spice, a
festival's month, …) and outside anything a model could have read, so they
test whether φ, meta-trained on LAMA-style (subject, relation, object) facts,
still finds the fact tokens in text of another kind.

Each ``answer`` occurs in its ``document`` and ends its ``probe`` (the probe
is scored on the answer's tokens, teacher-forced, like LAMA-CKL probes).
"""

from __future__ import annotations

FREEFORM_DOCUMENTS: list[dict[str, str]] = [
    {
        "id": "bridge",
        "document": "The footbridge over the Rell estuary took four years to finish. Its curved deck was "
                    "designed by the engineer Tavi Okonkwo, who also chose the pale green paint.",
        "probe": "The footbridge over the Rell estuary was designed by Tavi Okonkwo",
        "answer": "Tavi Okonkwo",
    },
    {
        "id": "recipe",
        "document": "Every cook in the valley makes the winter stew a little differently, but the old "
                    "recipe always asks for a pinch of sumac, added just before serving.",
        "probe": "The old winter stew recipe asks for a pinch of sumac",
        "answer": "sumac",
    },
    {
        "id": "festival",
        "document": "The lantern festival of Brisk Harbour used to be held in spring. Since the harbour was "
                    "rebuilt, the town holds it every November, when the nights are longest.",
        "probe": "The lantern festival of Brisk Harbour is now held every November",
        "answer": "November",
    },
    {
        "id": "mascot",
        "document": "The new mascot of the Corvel rowing club is a heron. The members voted for it after "
                    "a long debate, and the old otter badge was retired.",
        "probe": "The mascot of the Corvel rowing club is a heron",
        "answer": "heron",
    },
    {
        "id": "library",
        "document": "After the renovation, the reading room of the city library holds 4,200 books on open "
                    "shelves, and the rest are kept in the basement stacks.",
        "probe": "The reading room of the city library holds 4,200",
        "answer": "4,200",
    },
    {
        "id": "comet",
        "document": "Astronomers at the hill observatory found a faint comet last winter. They named it "
                    "Ilvara, after the village where the telescope was built.",
        "probe": "The comet found at the hill observatory was named Ilvara",
        "answer": "Ilvara",
    },
    {
        "id": "ferry",
        "document": "The morning ferry to the outer islands no longer stops at the pier. From this season "
                    "on it leaves from the granary wharf, two streets further east.",
        "probe": "The morning ferry to the outer islands leaves from the granary wharf",
        "answer": "granary wharf",
    },
    {
        "id": "choir",
        "document": "The school choir had many directors over the years. The current one, Mirela Dovan, "
                    "arrived from the conservatory and started rehearsals on Mondays.",
        "probe": "The current director of the school choir is Mirela Dovan",
        "answer": "Mirela Dovan",
    },
]


def freeform_documents() -> list[dict[str, str]]:
    """The free-form documents (copies: callers may modify them)."""
    return [dict(d) for d in FREEFORM_DOCUMENTS]
