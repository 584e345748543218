"""Model families: the kinds of base model an ensemble is made of, each registered once and owning its room.

A family (:class:`ModelFamily`) owns its YAML section, its training, its candidates, its loading and its hooks as
an ensemble member; importing this package registers the built-in ones (:mod:`~hf_memotion.families.text`,
:mod:`~hf_memotion.families.vision`, :mod:`~hf_memotion.families.multimodal`), and a module of your own registers
yours with :func:`register_family` (the guide "Adding a model family" walks through one).

Examples:
    >>> from hf_memotion.families import get_family, parse_member
    >>> spec = parse_member({"name": "joint", "family": "multimodal", "backbone": "tiny:clip"})
    >>> get_family(spec.family).label, type(spec).__name__
    ('joint', 'MultimodalMemberSpec')
"""

from hf_memotion.families.base import (
    LAYOUTS,
    SHARED_PROBLEMS,
    MemberSpec,
    ModelEntry,
    ModelFamily,
    UnknownFamilyError,
    expand_models,
    get_family,
    inherit_pruning,
    parse_member,
    register_family,
    registered_families,
)
from hf_memotion.families.inputs import ImageInput, MemberInput, TextInput
from hf_memotion.families.multimodal import MultimodalFamily, MultimodalMemberSpec
from hf_memotion.families.search import GridSpec, StudySpec

# the built-in families: each registers itself when its module is imported
from hf_memotion.families.text import TextFamily, TextMemberSpec
from hf_memotion.families.training import PreparedRun, prepare_run, train_member
from hf_memotion.families.vision import VisionFamily, VisionMemberSpec
from hf_memotion.models.text.preprocessing import TextFeeding
from hf_memotion.training.runs import MemberRun

__all__ = [
    "LAYOUTS",
    "SHARED_PROBLEMS",
    "GridSpec",
    "ImageInput",
    "MemberInput",
    "MemberRun",
    "MemberSpec",
    "ModelEntry",
    "ModelFamily",
    "MultimodalFamily",
    "MultimodalMemberSpec",
    "PreparedRun",
    "StudySpec",
    "TextFamily",
    "TextFeeding",
    "TextInput",
    "TextMemberSpec",
    "UnknownFamilyError",
    "VisionFamily",
    "VisionMemberSpec",
    "expand_models",
    "get_family",
    "inherit_pruning",
    "parse_member",
    "prepare_run",
    "register_family",
    "registered_families",
    "train_member",
]
