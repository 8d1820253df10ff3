"""Resolve a run's stream data from its documents (events, StreamResource, StreamDatum).

The monitor works from documents alone (DESIGN.md, "Documents are the only
interface"): scalar readings arrive in events, images by reference
(StreamResource: file ``uri`` and HDF5 ``dataset``; StreamDatum: the index
range of that dataset). :class:`RunData` collects one run's documents cheaply
on the RunEngine thread; :meth:`RunData.resolve` reads the frames later, on
the analysis worker, through a *frame source*:

- :func:`read_file_frames` (default): from the HDF5 files the StreamResource
  names (live acquisition);
- :class:`TiledFrames`: from a Tiled ``BlueskyRun`` node over HTTP (replay
  of an archived run: its frames are served by Tiled, the files need not be
  reachable from the analysing machine).

A frame source is a callable ``(stream, resource, datum) -> ndarray``.
"""

from __future__ import annotations

from collections import defaultdict
from urllib.parse import urlparse

import numpy as np

__all__ = ["RunData", "TiledFrames", "read_file_frames", "read_stream_datum"]


def read_stream_datum(resource: dict, datum: dict) -> np.ndarray:
    """Read the frames a StreamDatum points at, from the file its StreamResource names.

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


def read_file_frames(stream: str, resource: dict, datum: dict) -> np.ndarray:
    """Frame source reading the HDF5 file a StreamResource names (the live default)."""
    return read_stream_datum(resource, datum)


class TiledFrames:
    """Frame source reading a run's external arrays from Tiled instead of files.

    Parameters
    ----------
    run : tiled BlueskyRun client
        The raw run's node (``client[run_uid]``); ``run[stream][data_key]``
        is the array TiledWriter registered from the StreamResource/StreamDatum
        documents, one row per frame.

    Notes
    -----
    Row ``i`` of that array is StreamDatum index ``i`` of the run's
    documents: documents exported by Tiled (``run.documents()``) carry one
    StreamDatum per stream and key covering rows ``0:n``; the original
    documents index the same rows within each scan's file. Reads go over
    HTTP (each datum one request); the bytes are those of the files, so
    frames equal the live ones bit for bit.
    """

    def __init__(self, run):
        self.run = run
        self._nodes: dict = {}

    def _node(self, stream: str, key: str):
        node = self._nodes.get((stream, key))
        if node is None:
            try:
                node = self.run[stream][key]
            except KeyError:
                raise KeyError(f"Tiled run {self.run.item['id']!r} has no array {stream}/{key}") from None
            self._nodes[(stream, key)] = node
        return node

    def __call__(self, stream: str, resource: dict, datum: dict) -> np.ndarray:
        node = self._node(stream, resource["data_key"])
        start, stop = int(datum["indices"]["start"]), int(datum["indices"]["stop"])
        n = int(node.shape[0])
        if stop > n:
            raise ValueError(f"Tiled array {stream}/{resource['data_key']} holds {n} frames, "
                             f"the StreamDatum names {start}:{stop}")
        arr = node.read() if (start, stop) == (0, n) else node[start:stop]
        return np.asarray(arr)


class RunData:
    """Documents of one run, grouped by stream, frames left where they are.

    Parameters
    ----------
    start : dict
        The run's start document.
    frames : callable, optional
        Frame source ``(stream, resource, datum) -> ndarray``; default
        :func:`read_file_frames` (the files the StreamResources name).

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

    def __init__(self, start: dict, frames=None):
        self.start = start
        self.stop = None
        self.frames = frames or read_file_frames
        self.descriptors: dict[str, str] = {}
        self.events = defaultdict(lambda: defaultdict(list))
        self.event_seq = defaultdict(list)
        self.resources: dict[str, dict] = {}
        self.datums = defaultdict(list)

    @property
    def uid(self) -> str:
        return self.start["uid"]

    @classmethod
    def from_documents(cls, documents, frames=None) -> dict:
        """Group a document sequence (any number of runs) into ``{run uid: RunData}``.

        Documents of runs whose start is not in the sequence are ignored.
        """
        runs, desc_run, resources = {}, {}, {}
        for name, doc in documents:
            if name == "start":
                runs[doc["uid"]] = cls(doc, frames)
                continue
            if name == "stream_resource":
                resources[doc["uid"]] = doc  # run_start is optional in the schema
            if name in ("descriptor", "stream_resource", "stop"):
                run = runs.get(doc.get("run_start"))
                if run is not None and name == "descriptor":
                    desc_run[doc["uid"]] = run
            elif name in ("event", "event_page", "stream_datum"):
                run = desc_run.get(doc.get("descriptor"))
                if run is not None and name == "stream_datum" and doc["stream_resource"] not in run.resources:
                    if doc["stream_resource"] in resources:
                        run.add("stream_resource", resources[doc["stream_resource"]])
            else:
                continue
            if run is not None:
                run.add(name, doc)
        return runs

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

    def resolve(self, stream: str, reader=None) -> dict:
        """Every key of a stream, frames read through the frame source, ordered by sequence number.

        Parameters
        ----------
        stream : str
        reader : callable, optional
            ``reader(resource, datum) -> ndarray`` overriding the run's frame
            source for this call.

        Returns
        -------
        dict
            key -> ndarray with the event/frame axis first.
        """
        out = {}
        parts = defaultdict(list)
        for res, datum in self.datums.get(stream, []):
            arr = reader(res, datum) if reader is not None else self.frames(stream, res, datum)
            parts[res["data_key"]].append((datum["seq_nums"]["start"], arr))
        for key, chunks in parts.items():
            chunks.sort(key=lambda c: c[0])
            out[key] = np.concatenate([c[1] for c in chunks])
        if stream in self.events:
            order = np.argsort(self.event_seq[stream], kind="stable")
            for k, v in self.events[stream].items():
                out[k] = np.asarray(v)[order]
        return out
