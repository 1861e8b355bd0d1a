"""A vocabulary of everyday sounding things, shared by zero-shot mapping and source detection.

Grouped loosely after AudioSet/VGGSound top-level categories; each entry names an object or
scene whose sound is recognisable.
"""

SOUNDING_OBJECTS: tuple[str, ...] = (
    # animals
    "dog", "cat", "horse", "cow", "sheep", "pig", "goat", "chicken", "rooster", "duck", "goose",
    "bird", "crow", "owl", "pigeon", "parrot", "seagull", "frog", "cricket", "bee", "fly", "mosquito",
    "lion", "elephant", "monkey", "wolf", "bear", "whale", "dolphin", "snake",
    # people
    "person talking", "crowd", "baby crying", "child laughing", "people clapping", "footsteps",
    "person singing", "person whistling", "person coughing", "person snoring",
    # vehicles
    "car", "truck", "bus", "motorcycle", "bicycle", "train", "subway train", "airplane", "helicopter",
    "boat", "ship horn", "police siren", "ambulance", "fire truck", "tractor", "race car", "skateboard",
    # tools and machines
    "chainsaw", "lawn mower", "drill", "hammer", "saw", "jackhammer", "vacuum cleaner", "hair dryer",
    "washing machine", "blender", "sewing machine", "printer", "typewriter", "keyboard typing",
    "clock ticking", "alarm clock", "telephone ringing", "doorbell", "door knocking", "door slamming",
    "fan", "air conditioner", "engine idling", "fireworks", "gunshot", "explosion", "church bell",
    # music
    "piano", "guitar", "violin", "cello", "drum", "trumpet", "saxophone", "flute", "harp", "accordion",
    "organ", "bagpipes", "harmonica", "xylophone", "orchestra",
    # nature
    "rain", "thunder", "wind", "ocean waves", "river stream", "waterfall", "fire crackling",
    "leaves rustling", "snow footsteps",
    # home and city
    "frying food", "boiling water", "dishes clattering", "glass breaking", "water tap running",
    "toilet flushing", "shower", "city traffic", "construction site", "restaurant chatter",
    "stadium crowd", "market", "playground", "office", "kitchen", "forest", "beach", "street",
)
