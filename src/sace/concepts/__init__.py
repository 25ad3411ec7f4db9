"""The vocabulary every upper floor speaks (``domains``, ``erasure``, ``evaluation``, ``attacks``), importing
none of them:

* :mod:`.spec` -- the concept type (:class:`~.spec.ConceptSpec`: targets, paired anchors, retain, entangled,
  held-out prompts), built from prompts or read from a concept file; :mod:`.grammar` -- the prompt grammar
  (noun phrases, anchors, entangled prompts);
* :mod:`.prompts` -- prompt files (CSV/JSON/JSONL/TXT, the published adversarial sets of :mod:`.formats`);
  :mod:`.items` -- evaluation items;
* :mod:`.detectors`, :mod:`.nudenet`, :mod:`.imagenet` -- the detectors; :mod:`.judge` -- the ONE judge type
  every command scores images with, and the table of named detectors.
"""
