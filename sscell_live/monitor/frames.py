"""Resolve a run's stream data from its documents (events, StreamResource, StreamDatum).

The monitor works from documents alone (DESIGN.md, "Documents are the only
interface"): scalar readings arrive in events, images by reference
(StreamResource: file ``uri`` and HDF5 ``dataset``; StreamDatum: the index
range of that dataset). :class:`RunData` collects one run's documents cheaply
on the RunEngine thread; :meth:`RunData.resolve` reads the frames from the
files later, on the analysis worker.
"""

from __future__ import annotations

from collections import defaultdict
from urllib.parse import urlparse

import numpy as np

__all__ = ["RunData", "read_stream_datum"]


def read_stream_datum(resource: dict, datum: dict) -> np.ndarray:
    """Read the frames a StreamDatum points at.

    Parameters
    ----------
    resource : dict
        StreamResource document (``uri`` ``file://host/path``, ``parameters['dataset']``).
    datum : dict
        StreamDatum document (``indices`` ``{'start', 'stop'}``).

    Returns
    -------
    ndarray
        ``dataset[start:stop]``.

    Raises
    ------
    OSError, KeyError, ValueError
        A missing or unreadable file, a missing dataset, or fewer frames than
        the datum names.
    """
    import h5py

    if resource.get("mimetype", "application/x-hdf5") != "application/x-hdf5":
        raise ValueError(f"unsupported StreamResource mimetype {resource.get('mimetype')!r}")
    path = urlparse(resource["uri"]).path
    start, stop = int(datum["indices"]["start"]), int(datum["indices"]["stop"])
    with h5py.File(path, "r", swmr=True) as f:
        ds = f[resource["parameters"]["dataset"]]
        if ds.shape[0] < stop:
            raise ValueError(f"{path}:{resource['parameters']['dataset']} holds {ds.shape[0]} frames, "
                             f"the StreamDatum names {start}:{stop}")
        return np.asarray(ds[start:stop])


class RunData:
    """Documents of one run, grouped by stream, frames left in their files.

    Attributes
    ----------
    start, stop : dict or None
    descriptors : dict
        descriptor uid -> stream name.
    events : dict
        stream -> key -> list of values (event order).
    datums : dict
        stream -> list of (StreamResource, StreamDatum) pairs.
    """

    def __init__(self, start: dict):
        self.start = start
        self.stop = None
        self.descriptors: dict[str, str] = {}
        self.events = defaultdict(lambda: defaultdict(list))
        self.event_seq = defaultdict(list)
        self.resources: dict[str, dict] = {}
        self.datums = defaultdict(list)

    @property
    def uid(self) -> str:
        return self.start["uid"]

    def add(self, name: str, doc: dict) -> str | None:
        """File one document; return the stream it belongs to (or None)."""
        if name == "descriptor":
            self.descriptors[doc["uid"]] = doc["name"]
            return doc["name"]
        if name == "event":
            stream = self.descriptors[doc["descriptor"]]
            self.event_seq[stream].append(doc["seq_num"])
            for k, v in doc["data"].items():
                self.events[stream][k].append(v)
            return stream
        if name == "event_page":
            stream = self.descriptors[doc["descriptor"]]
            self.event_seq[stream].extend(doc["seq_num"])
            for k, v in doc["data"].items():
                self.events[stream][k].extend(v)
            return stream
        if name == "stream_resource":
            self.resources[doc["uid"]] = doc
            return None
        if name == "stream_datum":
            stream = self.descriptors[doc["descriptor"]]
            self.datums[stream].append((self.resources[doc["stream_resource"]], doc))
            return stream
        if name == "stop":
            self.stop = doc
        return None

    def scalars(self, stream: str) -> dict:
        """Event data of a stream, key -> ndarray (event order)."""
        return {k: np.asarray(v) for k, v in self.events.get(stream, {}).items()}

    def resolve(self, stream: str, reader=read_stream_datum) -> dict:
        """Every key of a stream, frames read from their files, ordered by sequence number.

        Returns
        -------
        dict
            key -> ndarray with the event/frame axis first.
        """
        out = {}
        parts = defaultdict(list)
        for res, datum in self.datums.get(stream, []):
            parts[res["data_key"]].append((datum["seq_nums"]["start"], reader(res, datum)))
        for key, chunks in parts.items():
            chunks.sort(key=lambda c: c[0])
            out[key] = np.concatenate([c[1] for c in chunks])
        if stream in self.events:
            order = np.argsort(self.event_seq[stream], kind="stable")
            for k, v in self.events[stream].items():
                out[k] = np.asarray(v)[order]
        return out
