"""Open-vocabulary inference with SOLE: scoring, mask splitting, the per-scene segmenter,
and its test-time augmentation over several views."""

__all__ = ["Instance", "MultiViewSegmenter", "OpenVocabSegmenter", "connected_parts"]


def __getattr__(name):
    if name in ("Instance", "OpenVocabSegmenter"):
        from sole_ros.inference import segmenter

        return getattr(segmenter, name)
    if name == "MultiViewSegmenter":
        from sole_ros.inference.multi_view import MultiViewSegmenter

        return MultiViewSegmenter
    if name == "connected_parts":
        from sole_ros.inference.connected_parts import connected_parts

        return connected_parts
    raise AttributeError(name)
