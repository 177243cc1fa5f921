"""Free-form documents written for the book's "open questions" chapter.

Each holds ONE new (invented) fact, told with some context around it, a probe
stating that fact, and the probe's answer. They lie outside LAMA-CKL's relations
(a bridge's designer, a recipe's spice, a festival's month, …) and outside
anything a model could have read, so they test whether φ, meta-trained on
LAMA-style (subject, relation, object) facts, still finds the fact tokens in
text of another kind.

Fields: ``id`` (unique), ``style`` (one of :data:`FREEFORM_STYLES`), ``answer_type``
(person, place, number, date, object, organisation or name), ``document``,
``probe`` and ``answer``. Each ``answer`` occurs exactly once in its ``document``
(never as its first word: the first token is never a training target) and ends
its ``probe`` (the probe is scored on the answer's tokens, teacher-forced, like
LAMA-CKL probes). Documents are short (under 60 words) so they fit 128 tokens.

The styles: ``"prose"`` (the first eight documents, written first; committed
results depend on their ids and texts, so they stay as they are), ``"news"``
(a news item), ``"biography"`` (a passage of a life), ``"product"`` (a product
note, spec sheet, label or notice) and ``"dialogue"`` (two or more speakers,
``A: … B: …``). Most of the later ones avoid LAMA's relation wording ("born in",
"capital of", "developed by", …).
"""

from __future__ import annotations

FREEFORM_STYLES = ("prose", "news", "biography", "product", "dialogue")

FREEFORM_DOCUMENTS: list[dict[str, str]] = [
    {
        "id": "bridge",
        "style": "prose",
        "answer_type": "person",
        "document": "The footbridge over the Rell estuary took four years to finish. Its curved deck was "
                    "designed by the engineer Tavi Okonkwo, who also chose the pale green paint.",
        "probe": "The footbridge over the Rell estuary was designed by Tavi Okonkwo",
        "answer": "Tavi Okonkwo",
    },
    {
        "id": "recipe",
        "style": "prose",
        "answer_type": "object",
        "document": "Every cook in the valley makes the winter stew a little differently, but the old "
                    "recipe always asks for a pinch of sumac, added just before serving.",
        "probe": "The old winter stew recipe asks for a pinch of sumac",
        "answer": "sumac",
    },
    {
        "id": "festival",
        "style": "prose",
        "answer_type": "date",
        "document": "The lantern festival of Brisk Harbour used to be held in spring. Since the harbour was "
                    "rebuilt, the town holds it every November, when the nights are longest.",
        "probe": "The lantern festival of Brisk Harbour is now held every November",
        "answer": "November",
    },
    {
        "id": "mascot",
        "style": "prose",
        "answer_type": "object",
        "document": "The new mascot of the Corvel rowing club is a heron. The members voted for it after "
                    "a long debate, and the old otter badge was retired.",
        "probe": "The mascot of the Corvel rowing club is a heron",
        "answer": "heron",
    },
    {
        "id": "library",
        "style": "prose",
        "answer_type": "number",
        "document": "After the renovation, the reading room of the city library holds 4,200 books on open "
                    "shelves, and the rest are kept in the basement stacks.",
        "probe": "The reading room of the city library holds 4,200",
        "answer": "4,200",
    },
    {
        "id": "comet",
        "style": "prose",
        "answer_type": "name",
        "document": "Astronomers at the hill observatory found a faint comet last winter. They named it "
                    "Ilvara, after the village where the telescope was built.",
        "probe": "The comet found at the hill observatory was named Ilvara",
        "answer": "Ilvara",
    },
    {
        "id": "ferry",
        "style": "prose",
        "answer_type": "place",
        "document": "The morning ferry to the outer islands no longer stops at the pier. From this season "
                    "on it leaves from the granary wharf, two streets further east.",
        "probe": "The morning ferry to the outer islands leaves from the granary wharf",
        "answer": "granary wharf",
    },
    {
        "id": "choir",
        "style": "prose",
        "answer_type": "person",
        "document": "The school choir had many directors over the years. The current one, Mirela Dovan, "
                    "arrived from the conservatory and started rehearsals on Mondays.",
        "probe": "The current director of the school choir is Mirela Dovan",
        "answer": "Mirela Dovan",
    },
    {
        "id": "dam",
        "style": "news",
        "answer_type": "number",
        "document": "KESTREL VALE — Work on the reservoir dam above Kestrel Vale stopped on Tuesday after "
                    "engineers found a crack in the spillway. The regional water board said the repairs would "
                    "cost 3.7 million crowns and last most of the summer.",
        "probe": "Repairing the spillway of the Kestrel Vale dam will cost 3.7 million",
        "answer": "3.7 million",
    },
    {
        "id": "mayor",
        "style": "news",
        "answer_type": "person",
        "document": "Voters in the river town of Osk chose a new mayor on Sunday. Dagny Farrow, a former "
                    "ferry pilot, won 61 percent of the vote and promised to reopen the night market.",
        "probe": "The new mayor of Osk is Dagny Farrow",
        "answer": "Dagny Farrow",
    },
    {
        "id": "strike",
        "style": "news",
        "answer_type": "organisation",
        "document": "Dock workers at Port Selvane ended their three-week strike yesterday. The deal, brokered "
                    "by the Amberline Shipping Guild, raises night-shift pay and adds a second rest day.",
        "probe": "The deal that ended the Port Selvane dock strike was brokered by the Amberline Shipping Guild",
        "answer": "Amberline Shipping Guild",
    },
    {
        "id": "railway",
        "style": "news",
        "answer_type": "date",
        "document": "Landslides closed the coastal line between Tollan and Vask Bay last autumn. The operator "
                    "announced on Friday that trains will run again from March; replacement buses continue "
                    "until then.",
        "probe": "Trains between Tollan and Vask Bay will run again from March",
        "answer": "March",
    },
    {
        "id": "wreck",
        "style": "news",
        "answer_type": "object",
        "document": "Divers surveying the wreck off Cape Lorrow have brought up a bronze astrolabe from the "
                    "captain's cabin. The museum in Sallow Ford will put it on show once it has been cleaned.",
        "probe": "From the captain's cabin of the wreck off Cape Lorrow, divers brought up a bronze astrolabe",
        "answer": "bronze astrolabe",
    },
    {
        "id": "theatre",
        "style": "news",
        "answer_type": "place",
        "document": "The Fennick puppet theatre is leaving its cramped hall on Mill Lane. From next season "
                    "its shows will be staged in the old tram depot at Quarry Gate, which the city is turning "
                    "into an arts centre.",
        "probe": "From next season the Fennick puppet theatre stages its shows in the old tram depot at Quarry Gate",
        "answer": "Quarry Gate",
    },
    {
        "id": "shearing",
        "style": "news",
        "answer_type": "number",
        "document": "A farmer from the Yarrow uplands broke the county record for hand-shearing on Saturday, "
                    "clipping 412 sheep in nine hours at the Dunmere show. The old record had stood since the "
                    "war.",
        "probe": "At the Dunmere show the farmer from the Yarrow uplands clipped 412",
        "answer": "412",
    },
    {
        "id": "prize",
        "style": "news",
        "answer_type": "person",
        "document": "This year's Orrin Prize for young architects goes to a design for floating classrooms. "
                    "Its author, Sefa Arundel, will collect the award at a ceremony in Brell next month.",
        "probe": "This year's Orrin Prize for young architects was won by Sefa Arundel",
        "answer": "Sefa Arundel",
    },
    {
        "id": "cartographer",
        "style": "biography",
        "answer_type": "place",
        "document": "Ilse Varnholt spent her early career mapping tidal channels. In 1987 she moved inland "
                    "and drew the first complete map of the Tessaly caves, a survey that took her eleven "
                    "years.",
        "probe": "Ilse Varnholt drew the first complete map of the Tessaly caves",
        "answer": "Tessaly caves",
    },
    {
        "id": "violinist",
        "style": "biography",
        "answer_type": "object",
        "document": "Born to a family of bakers, Oren Maddox taught himself music at fourteen. He never owned "
                    "a factory-made instrument: his violin was carved from a beam of a collapsed barn.",
        "probe": "The violin of Oren Maddox was carved from a beam of a collapsed barn",
        "answer": "collapsed barn",
    },
    {
        "id": "reading_circle",
        "style": "biography",
        "answer_type": "organisation",
        "document": "After leaving the navy, Pell Asante taught at a village school for two decades. In 2009 "
                    "he started the Lantern Reading Circle, which now runs free evening classes in six towns.",
        "probe": "In 2009 Pell Asante started the Lantern Reading Circle",
        "answer": "Lantern Reading Circle",
    },
    {
        "id": "botanist",
        "style": "biography",
        "answer_type": "number",
        "document": "The botanist Henrika Solle catalogued the mosses of the northern fells for most of her "
                    "life. She published her last field guide in 1974, the year her eyesight began to fail.",
        "probe": "Henrika Solle published her last field guide in 1974",
        "answer": "1974",
    },
    {
        "id": "glassblower",
        "style": "biography",
        "answer_type": "person",
        "document": "As a young woman, Tamsin Okoro learned to blow glass in a workshop by the canal. Her "
                    "teacher there, Bram Velling, gave her his furnace when he retired.",
        "probe": "Tamsin Okoro learned to blow glass from Bram Velling",
        "answer": "Bram Velling",
    },
    {
        "id": "chess",
        "style": "biography",
        "answer_type": "place",
        "document": "The chess composer Luka Brenner rarely spoke about his childhood. He grew up above a "
                    "tailor's shop in Vellmoor, a mining village that no longer appears on maps.",
        "probe": "Luka Brenner grew up above a tailor's shop in Vellmoor",
        "answer": "Vellmoor",
    },
    {
        "id": "beekeeper",
        "style": "biography",
        "answer_type": "date",
        "document": "Every year the beekeeper Agathe Rim closed her hives for winter on the same day. She "
                    "opened them again only in April, after the first willow catkins had appeared.",
        "probe": "Agathe Rim opened her hives again only in April",
        "answer": "April",
    },
    {
        "id": "walker",
        "style": "biography",
        "answer_type": "number",
        "document": "The walker Emeka Thorne crossed the Sallow plateau on foot more often than anyone. By "
                    "his last crossing he had worn out 23 pairs of boots, and he kept every pair in a shed.",
        "probe": "On his crossings of the Sallow plateau, Emeka Thorne wore out a total of 23",
        "answer": "23",
    },
    {
        "id": "kettle",
        "style": "product",
        "answer_type": "number",
        "document": "Corra K2 travel kettle. Capacity: 0.6 litres. Boils a full load in 140 seconds on a 230 "
                    "V supply. Folding handle, silicone lid seal, two-year warranty.",
        "probe": "The Corra K2 travel kettle boils a full load in 140 seconds",
        "answer": "140 seconds",
    },
    {
        "id": "lamp",
        "style": "product",
        "answer_type": "object",
        "document": "Product note: the Hollin desk lamp has a dimmable arm and a weighted oak base. Its light "
                    "comes from a single amber filament bulb, chosen to keep the glare low for reading at "
                    "night.",
        "probe": "The light of the Hollin desk lamp comes from a single amber filament bulb",
        "answer": "amber filament bulb",
    },
    {
        "id": "crackers",
        "style": "product",
        "answer_type": "organisation",
        "document": "Dunwick Oat Crackers, 200 g. Baked with rolled oats and sea salt. Made for the Pellory "
                    "Market grocery chain by the Ashgrove Mill Cooperative. Store in a cool, dry place.",
        "probe": "Dunwick Oat Crackers are baked by the Ashgrove Mill Cooperative",
        "answer": "Ashgrove Mill Cooperative",
    },
    {
        "id": "tea",
        "style": "product",
        "answer_type": "place",
        "document": "Tasting note: Ferrow single-estate tea has a smoky finish and a copper colour. The "
                    "leaves are picked by hand on the terraces of Mount Ossel and dried over pine wood.",
        "probe": "The leaves of Ferrow single-estate tea are picked on the terraces of Mount Ossel",
        "answer": "Mount Ossel",
    },
    {
        "id": "tent",
        "style": "product",
        "answer_type": "number",
        "document": "Spec sheet: Tarn 3 trekking tent. Sleeps three, two doors, aluminium poles. Packed "
                    "weight: 2.35 kg. Pitches outer-first, so the inner stays dry in rain.",
        "probe": "The Tarn 3 trekking tent has a packed weight of 2.35 kg",
        "answer": "2.35 kg",
    },
    {
        "id": "recall",
        "style": "product",
        "answer_type": "date",
        "document": "Recall notice: Bellaire baby monitors with serial numbers starting BX7 may overheat "
                    "while charging. Only units sold in February are affected; owners can return them to any "
                    "store.",
        "probe": "The Bellaire baby monitors being recalled were sold in February",
        "answer": "February",
    },
    {
        "id": "pen",
        "style": "product",
        "answer_type": "person",
        "document": "The Quill 9 fountain pen has a brass barrel and a flexible steel nib. Its clip, shaped "
                    "like a swallow's tail, was drawn by the illustrator Noor Halvorsen.",
        "probe": "The clip of the Quill 9 fountain pen was drawn by Noor Halvorsen",
        "answer": "Noor Halvorsen",
    },
    {
        "id": "jacket",
        "style": "product",
        "answer_type": "object",
        "document": "Care label, Vinter field jacket: machine wash cold, do not tumble dry. The outer shell "
                    "is woven from nettle fibre and the lining is brushed cotton.",
        "probe": "The outer shell of the Vinter field jacket is woven from nettle fibre",
        "answer": "nettle fibre",
    },
    {
        "id": "boathouse",
        "style": "dialogue",
        "answer_type": "place",
        "document": "A: Have you seen the keys to the boathouse? B: Marta moved them last week. They hang on "
                    "a nail behind the tide clock now. A: Odd place, but fine.",
        "probe": "The keys to the boathouse hang on a nail behind the tide clock",
        "answer": "tide clock",
    },
    {
        "id": "allotment",
        "style": "dialogue",
        "answer_type": "date",
        "document": "A: When does the allotment committee meet now? B: They moved it to the second Thursday "
                    "of each month, in the seed shed. A: Good, I can make that.",
        "probe": "The allotment committee now meets on the second Thursday",
        "answer": "second Thursday",
    },
    {
        "id": "bike_shed",
        "style": "dialogue",
        "answer_type": "number",
        "document": "A: The code for the bike shed isn't 1234 any more, is it? B: No, the caretaker changed "
                    "it to 7096 after the break-in. A: Thanks, I'll write it down.",
        "probe": "After the break-in the caretaker changed the bike shed code to 7096",
        "answer": "7096",
    },
    {
        "id": "bakery",
        "style": "dialogue",
        "answer_type": "person",
        "document": "A: Who takes over the bakery when Mr Hale retires? B: His niece, Yara Pemberton. She "
                    "trained in the city and starts in the new year. A: Good, the bread is safe.",
        "probe": "The bakery of Mr Hale is being taken over by his niece, Yara Pemberton",
        "answer": "Yara Pemberton",
    },
    {
        "id": "clinic",
        "style": "dialogue",
        "answer_type": "organisation",
        "document": "Nurse: Your scan results will come by post. Patient: Who do I call if they don't arrive? "
                    "Nurse: The Westerly Clinic Trust keeps the records now, not the hospital.",
        "probe": "The scan records are now kept by the Westerly Clinic Trust",
        "answer": "Westerly Clinic Trust",
    },
    {
        "id": "gallery",
        "style": "dialogue",
        "answer_type": "object",
        "document": "Guide: Before the tour, one rule. Visitor: No photos? Guide: Photos are fine. But nobody "
                    "may touch the glass harp in the east gallery; it cracked once already.",
        "probe": "On the tour, visitors may not touch the glass harp",
        "answer": "glass harp",
    },
    {
        "id": "reading_group",
        "style": "dialogue",
        "answer_type": "place",
        "document": "Tom: Where did the reading group end up meeting? Ines: Upstairs at the Copper Kettle "
                    "café on Wren Street. The library room was booked. Tom: See you there.",
        "probe": "The reading group met upstairs at the Copper Kettle café",
        "answer": "Copper Kettle café",
    },
    {
        "id": "lanterns",
        "style": "dialogue",
        "answer_type": "number",
        "document": "A: How many lanterns did the village order for the parade? B: We ordered 310, all paper. "
                    "A: That's more than last year. B: The route has twice as many streets.",
        "probe": "The number of paper lanterns the village ordered for the parade was 310",
        "answer": "310",
    },
]


def freeform_documents(styles: str | tuple[str, ...] | list[str] | None = None) -> list[dict[str, str]]:
    """The free-form documents (copies: callers may modify them), in corpus order.

    ``styles``: a style or several of :data:`FREEFORM_STYLES` to keep; ``None`` keeps all.
    ``freeform_documents("prose")`` is the first eight documents, the corpus of the book's
    first free-form runs. An unknown style raises ``ValueError``.
    """
    if styles is None:
        keep = set(FREEFORM_STYLES)
    else:
        keep = {styles} if isinstance(styles, str) else set(styles)
        unknown = keep - set(FREEFORM_STYLES)
        if unknown:
            raise ValueError(f"unknown free-form styles {sorted(unknown)}: {', '.join(FREEFORM_STYLES)}")
    return [dict(d) for d in FREEFORM_DOCUMENTS if d["style"] in keep]
