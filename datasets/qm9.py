"""QM9 rebuilt offline from the `qm9pack` PyPI package, field-for-field like PyG's `QM9`.

Why: PyG downloads QM9 at run time (no network here) and the MTL references (LibMTL/DB-MTL,
nash-mtl) index molecules by PyG's order. qm9pack 1.0.3 holds the same 130,831 molecules in the
same order with all 19 raw targets and full-precision geometry, so we rebuild PyG's items from it:
x [N,11], z, pos (rounded to 4 decimals, as PyG's SDF), edge_index/edge_attr (bonds by a distance
rule that reproduces PyG's 4,883,516 directed edges, bond orders from the kekulized GDB-17
SMILES), y [1,19] in PyG units, name, idx. RDKit is needed only while building; the result is
cached under `root` keyed on loader version, qm9pack version, CSV sha256s and options.
Recipe and evidence: the project's QM9 notes (README "QM9" section).

Known differences from PyG's file: per-bond Kekulé orders in ~5.9k benzene-like rings and a
few charge-separated (OEChem) forms may differ; everything else is reproduced.
"""
from __future__ import annotations

import contextlib
import fcntl
import hashlib
import importlib.metadata
import importlib.util
import json
import logging
import os
import sys
import time
from pathlib import Path
from typing import Callable

import numpy as np
import torch
from torch_geometric.data import Batch, Data, InMemoryDataset

from mtl.errors import DatasetDamaged, DatasetNotFound, InvalidValue, brief
from mtl.paths import project_root

log = logging.getLogger(__name__)

LOADER_VERSION = "1"
QM9PACK_VERSION = "1.0.3"
INSTALL_HINT = f"pip install qm9pack=={QM9PACK_VERSION}"
NUM_MOLECULES = 130_831
PART_FILES = ("qm9_part1.csv", "qm9_part2.csv", "qm9_part3.csv")
PART_ROWS = (43_610, 43_611, 43_610)
# sha256 of the CSVs in the qm9pack 1.0.3 wheel (checked before every build/load).
CSV_SHA256 = {
    "qm9_part1.csv": "19f0a5d595462d52cd82eef3370f3e9eb55a1f52cb14985657200349568deff3",
    "qm9_part2.csv": "2bca113fdc0b28a13563c80ed9b240e934f3da6c64c64fe74ddb4f0f36036e61",
    "qm9_part3.csv": "9c5efb5733d2af149db8d95d36ff198b4ffed12d9f7b344220a1e5877d5c6a43",
}

# PyG torch_geometric/datasets/qm9.py constants (current master).
HAR2EV = 27.211386246
KCALMOL2EV = 0.04336414
HARTREE2KCALMOL = 627.509  # DeepChem's factor for the *_atom columns (back-computed from gdb_1/2)
# PyG y column order, with the qm9pack column each comes from (None: atomization, derived).
TARGETS = ("mu", "alpha", "homo", "lumo", "gap", "r2", "zpve", "U0", "U", "H", "G", "cv",
           "U0_atom", "U_atom", "H_atom", "G_atom", "A", "B", "C")
_SOURCE_COLUMNS = {
    "mu": "Dipole_debye", "alpha": "Polarizability_bohr3", "homo": "HOMO_au", "lumo": "LUMO_au",
    "gap": "HOMO_LUMO_gap_au", "r2": "R2_bohr2", "zpve": "ZPVE_au", "U0": "InternalEnergy_0K_au",
    "U": "InternalEnergy_298K_au", "H": "Enthalphy_298K_au", "G": "GibbsFreeEnergy_298K_au",
    "cv": "Heatcapacity_Cv_cal_mol_K", "A": "RotA_GHz", "B": "RotB_GHz", "C": "RotC_GHz",
}
_FACTORS = {"homo": HAR2EV, "lumo": HAR2EV, "gap": HAR2EV, "zpve": HAR2EV, "U0": HAR2EV,
            "U": HAR2EV, "H": HAR2EV, "G": HAR2EV, "U0_atom": KCALMOL2EV, "U_atom": KCALMOL2EV,
            "H_atom": KCALMOL2EV, "G_atom": KCALMOL2EV}
# QM9 atomref (figshare), Hartree, rows H C N O F; columns U0, U298, H298, G298.
# Note O U298 = -75.063163 (not ...162: that shifts the mean of target 13 by 3.5e-5 eV).
ATOMREF = np.array([
    [-0.500273, -0.498857, -0.497912, -0.510927],
    [-37.846772, -37.845355, -37.844411, -37.861317],
    [-54.583861, -54.582445, -54.581501, -54.598897],
    [-75.064579, -75.063163, -75.062219, -75.079532],
    [-99.718730, -99.717314, -99.716370, -99.733544],
])
_ATOM_ENERGY = {"U0_atom": ("U0", 0), "U_atom": ("U", 1), "H_atom": ("H", 2), "G_atom": ("G", 3)}
ELEMENTS = ("H", "C", "N", "O", "F")
ATOMIC_NUMBER = {"H": 1, "C": 6, "N": 7, "O": 8, "F": 9}
# Distance rule (Å) that reproduces PyG's edge total exactly; computed on float64 coordinates.
HEAVY_CUTOFF = 1.81
H_CUTOFF = 1.35
FEATURES = ("pyg", "chem")
BOND_SOURCES = ("template", "template+ghost", "determine_bond_orders", "all_single")


# -- locating and checking the source ----------------------------------------------------------
def default_root() -> Path:
    """Cache dir: $QM9_ROOT if set, else <project>/data/qm9."""
    env = os.environ.get("QM9_ROOT")
    return Path(env) if env else project_root() / "data" / "qm9"


def qm9pack_data_dir() -> Path:
    """qm9pack's data folder, found without importing qm9pack (its __init__ needs pkg_resources,
    which current setuptools no longer ships)."""
    spec = importlib.util.find_spec("qm9pack")
    if spec is None or not spec.submodule_search_locations:
        raise DatasetNotFound(
            f"QM9: the `qm9pack` package is not installed (looked for it on sys.path). "
            f"Install it with `{INSTALL_HINT}`; the QM9 graphs are built from its CSVs.")
    data = Path(list(spec.submodule_search_locations)[0]) / "data"
    missing = [f for f in PART_FILES if not (data / f).is_file()]
    if missing:
        raise DatasetNotFound(f"QM9: qm9pack at {data.parent} lacks {missing} in {data}; "
                              f"reinstall with `{INSTALL_HINT}`.")
    return data


def qm9pack_version() -> str:
    try:
        return importlib.metadata.version("qm9pack")
    except importlib.metadata.PackageNotFoundError:
        return "unknown"


_HASHES: dict[tuple, str] = {}


def sha256(path: Path) -> str:
    """sha256 of a file, memoised per process on (path, size, mtime) so repeated dataset
    constructions do not re-read 225 MB."""
    st = Path(path).stat()
    key = (str(Path(path).resolve()), st.st_size, st.st_mtime_ns)
    if key not in _HASHES:
        _HASHES[key] = _sha256(path)
    return _HASHES[key]


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 22), b""):
            h.update(block)
    return h.hexdigest()


def check_sources(data_dir: Path, expected: dict[str, str] = CSV_SHA256) -> dict[str, str]:
    """sha256 of the part CSVs; raises DatasetNotFound if they are not qm9pack 1.0.3's."""
    got = {f: sha256(data_dir / f) for f in PART_FILES}
    bad = {f: got[f] for f in PART_FILES if got[f] != expected[f]}
    if bad:
        raise DatasetNotFound(
            f"QM9: CSVs in {data_dir} differ from qm9pack {QM9PACK_VERSION}'s "
            f"(sha256 mismatch: {bad}); install the pinned release with `{INSTALL_HINT}`.")
    return got


def read_csvs(data_dir: Path, limit: int | None = None):
    """The three part CSVs, concatenated in order (first `limit` rows only if given)."""
    import pandas as pd

    cols = ["XYZ_file", "Index", "SMILES", "N_atoms", "Elements", "XYZ_Ang", *_SOURCE_COLUMNS.values()]
    frames, left = [], limit
    for f, n in zip(PART_FILES, PART_ROWS):
        if left is not None and left <= 0:
            break
        nrows = None if left is None or left >= n else left
        frames.append(pd.read_csv(data_dir / f, usecols=cols, nrows=nrows))
        if left is not None:
            left -= len(frames[-1])
    df = pd.concat(frames, ignore_index=True)
    expected = NUM_MOLECULES if limit is None else min(limit, NUM_MOLECULES)
    index = df["Index"].to_numpy()
    file_no = df["XYZ_file"].str.extract(r"_(\d+)\.xyz")[0].astype(np.int64).to_numpy()
    if len(df) != expected or not np.all(np.diff(index) > 0) or not np.array_equal(index, file_no):
        raise DatasetNotFound(f"QM9: unexpected content in {data_dir} ({len(df)} rows, expected "
                              f"{expected} with ascending Index == XYZ_file number); `{INSTALL_HINT}`.")
    return df


# -- targets -------------------------------------------------------------------------------------
def compute_targets(df, counts: np.ndarray) -> np.ndarray:
    """y [M, 19] float32 in PyG units with PyG's float32 arithmetic.

    counts: [M, 5] atoms per element (H, C, N, O, F), for the atomization energies, which are
    DeepChem's round((E - sum atomref) * 627.509, 9) kcal/mol times float32 KCALMOL2EV."""
    out = np.empty((len(df), len(TARGETS)), dtype=np.float32)
    for j, name in enumerate(TARGETS):
        if name in _ATOM_ENERGY:
            src, ref_col = _ATOM_ENERGY[name]
            e = df[_SOURCE_COLUMNS[src]].to_numpy(np.float64)
            raw = np.round((e - counts.astype(np.float64) @ ATOMREF[:, ref_col]) * HARTREE2KCALMOL, 9)
        else:
            raw = df[_SOURCE_COLUMNS[name]].to_numpy(np.float64)
        col = raw.astype(np.float32)
        if name in _FACTORS:
            col = col * np.float32(_FACTORS[name])
        out[:, j] = col
    return out


# -- geometry and bonds ---------------------------------------------------------------------------
def parse_elements(s: str) -> list[str]:
    return [t.strip().strip("'\"") for t in s.strip()[1:-1].split(",")]


def distance_bonds(z: np.ndarray, xyz: np.ndarray) -> np.ndarray:
    """Undirected bonds [B,2] (i<j) of one molecule: heavy-heavy < 1.81 Å, H-heavy < 1.35 Å,
    never H-H (float64 coordinates)."""
    mol, i, j = all_distance_bonds(z, xyz, np.array([0, len(z)]))
    return np.stack([i, j], 1)


def all_distance_bonds(z_all: np.ndarray, xyz_all: np.ndarray, node_ptr: np.ndarray, chunk: int = 4096):
    """The distance rule for every molecule at once, vectorised per molecule size.

    Returns (mol, i, j): molecule index and local atom indices (i<j), sorted by (mol, i, j)."""
    sizes = np.diff(node_ptr)
    heavy_all = z_all > 1
    out = []
    for n in np.unique(sizes):
        mols = np.nonzero(sizes == n)[0]
        iu, ju = np.triu_indices(n, 1)
        for c in range(0, len(mols), chunk):
            mm = mols[c:c + chunk]
            a = node_ptr[mm][:, None] + iu[None, :]  # [M, P] global atom ids
            b = node_ptr[mm][:, None] + ju[None, :]
            d = np.sqrt(((xyz_all[a] - xyz_all[b]) ** 2).sum(-1))
            ha, hb = heavy_all[a], heavy_all[b]
            keep = ((ha & hb) & (d < HEAVY_CUTOFF)) | ((ha ^ hb) & (d < H_CUTOFF))
            r, p = np.nonzero(keep)
            out.append((mm[r], iu[p], ju[p]))
    mol = np.concatenate([o[0] for o in out])
    i = np.concatenate([o[1] for o in out])
    j = np.concatenate([o[2] for o in out])
    order = np.lexsort((j, i, mol))
    return mol[order], i[order].astype(np.int64), j[order].astype(np.int64)


class _BondOrders:
    """Bond orders (1, 2, 3) of a distance graph from the kekulized GDB-17 SMILES.

    The SMILES graph (element + connectivity only, charges and orders ignored) is matched as a
    substructure of the distance graph. Hydrogens are leaves, so the match runs on the heavy-atom
    graphs with each atom coloured by (element, H count), which is equivalent to matching the
    graphs with explicit Hs and much faster. Template bonds copy their Kekulé order; extra
    distance bonds (PyG's "ghost bonds") are SINGLE. If the SMILES does not fit the geometry,
    RDKit's DetermineBondOrders on the distance graph decides; if that fails too, all bonds are
    single. Every molecule's source is counted.
    """

    def __init__(self, features: str):
        from rdkit import Chem, RDLogger
        from rdkit.Chem import rdDetermineBonds

        RDLogger.DisableLog("rdApp.*")
        self.Chem, self.rdDetermineBonds, self.features = Chem, rdDetermineBonds, features
        self._order = {Chem.BondType.SINGLE: 1, Chem.BondType.DOUBLE: 2, Chem.BondType.TRIPLE: 3}
        H = Chem.HybridizationType
        self._hyb = {H.SP: 0, H.SP2: 1, H.SP3: 2}

    def _plain(self, atomic_numbers, bonds):
        Chem = self.Chem
        m = Chem.RWMol()
        for a in atomic_numbers:
            m.AddAtom(Chem.Atom(a))
        single = Chem.BondType.SINGLE
        for i, j in bonds:
            m.AddBond(i, j, single)
        return m

    def _template(self, smiles, z, bonds):
        """Fast path; None when the SMILES graph does not map onto the distance graph.

        Returns (orders [B], chem [N,4] | None, template mask [B])."""
        Chem = self.Chem
        zl, bl = z.tolist(), bonds.tolist()
        n = len(zl)
        heavy = [a > 1 for a in zl]
        n_h, h_deg, hb = [0] * n, [0] * n, []
        for k, (i, j) in enumerate(bl):
            if heavy[i] and heavy[j]:
                hb.append(k)
            else:
                x, h = (i, j) if heavy[i] else (j, i)
                n_h[x] += 1
                h_deg[h] += 1
        if any(h_deg[a] != 1 for a in range(n) if not heavy[a]):
            return None  # an H without exactly one neighbour: the leaf argument does not hold
        hv = [a for a in range(n) if heavy[a]]
        local = {a: q for q, a in enumerate(hv)}
        mol = Chem.MolFromSmiles(smiles)
        if mol is None or mol.GetNumAtoms() != len(hv):
            return None
        atoms = []
        for q in range(mol.GetNumAtoms()):
            a = mol.GetAtomWithIdx(q)
            atoms.append((5 * a.GetAtomicNum() + a.GetTotalNumHs(), a.GetIsAromatic(), a.GetHybridization()))
        Chem.Kekulize(mol, clearAromaticFlags=True)
        order = self._order
        tb = []
        for q in range(mol.GetNumBonds()):
            b = mol.GetBondWithIdx(q)
            tb.append((b.GetBeginAtomIdx(), b.GetEndAtomIdx(), order[b.GetBondType()]))
        target_bonds = [(local[bl[k][0]], local[bl[k][1]]) for k in hb]
        query = self._plain([a[0] for a in atoms], [(i, j) for i, j, _ in tb])
        target = self._plain([5 * zl[a] + n_h[a] for a in hv], target_bonds)
        match = target.GetSubstructMatch(query)
        if not match:
            return None
        key = {}
        for k, (i, j) in zip(hb, target_bonds):
            key[(i, j)] = k
            key[(j, i)] = k
        orders = np.ones(len(bl), dtype=np.int64)
        in_template = np.ones(len(bl), dtype=bool)
        in_template[hb] = False
        for i, j, o in tb:
            k = key[(match[i], match[j])]
            orders[k] = o
            in_template[k] = True
        chem = None
        if self.features == "chem":
            chem = np.zeros((n, 4), dtype=np.float32)
            for q, (_, arom, hyb) in enumerate(atoms):
                t = hv[match[q]]
                chem[t, 0] = float(arom)
                h = self._hyb.get(hyb)
                if h is not None:
                    chem[t, 1 + h] = 1.0
        return orders, chem, in_template

    def __call__(self, smiles: str, z: np.ndarray, xyz: np.ndarray, bonds: np.ndarray):
        """-> (orders [B] aligned with `bonds`, chem [N,4] aromatic/sp/sp2/sp3 or None, source,
        template mask [B] (False = ghost bond))."""
        Chem = self.Chem
        fast = self._template(smiles, z, bonds)
        if fast is not None:
            orders, chem, in_template = fast
            return orders, chem, ("template" if in_template.all() else "template+ghost"), in_template
        # Fallback: perceive orders from the distance graph itself.
        n = len(z)
        in_template = np.ones(len(bonds), dtype=bool)
        key = {(int(i), int(j)): k for k, (i, j) in enumerate(bonds.tolist())}
        try:
            m = self._plain(z.tolist(), bonds.tolist())
            conf = Chem.Conformer(n)
            for a in range(n):
                conf.SetAtomPosition(a, xyz[a].tolist())
            m.AddConformer(conf, assignId=True)
            self.rdDetermineBonds.DetermineBondOrders(m, charge=0)
            Chem.Kekulize(m, clearAromaticFlags=True)
            orders = np.ones(len(bonds), dtype=np.int64)
            for b in m.GetBonds():
                i, j = b.GetBeginAtomIdx(), b.GetEndAtomIdx()
                orders[key[(min(i, j), max(i, j))]] = self._order[b.GetBondType()]
            return orders, None, "determine_bond_orders", in_template
        except Exception as e:  # counted and logged; the molecule keeps its connectivity
            log.warning("QM9: bond orders for %s fell back to all-single (%s)", smiles, e)
            return np.ones(len(bonds), dtype=np.int64), None, "all_single", in_template


def collate_graphs(z_all, node_ptr, mol, i, j, orders, chem_all):
    """Collated x [N,11], edge_index [2,E] (local ids, each molecule's edges sorted by
    row*N+col, as PyG) and edge_attr [E,4] one-hot (single, double, triple, aromatic), plus the
    per-molecule edge pointer."""
    m = len(node_ptr) - 1
    gi, gj = node_ptr[mol] + i, node_ptr[mol] + j
    row = np.concatenate([gi, gj])
    col = np.concatenate([gj, gi])
    typ = np.concatenate([orders, orders]) - 1
    total = int(node_ptr[-1])
    perm = np.argsort(row * total + col, kind="stable")  # molecule-major, then row*N+col
    row, col, typ = row[perm], col[perm], typ[perm]
    edge_mol = np.concatenate([mol, mol])[perm]
    edge_ptr = np.concatenate([[0], np.cumsum(np.bincount(edge_mol, minlength=m))])
    edge_attr = np.zeros((len(typ), 4), dtype=np.float32)
    edge_attr[np.arange(len(typ)), typ] = 1.0
    x = np.zeros((total, 11), dtype=np.float32)
    x[np.arange(total), np.searchsorted(np.array([1, 6, 7, 8, 9]), z_all)] = 1.0
    x[:, 5] = z_all
    if chem_all is not None:
        x[:, 6:10] = chem_all
    x[:, 10] = np.bincount(col, weights=(z_all[row] == 1).astype(np.float64), minlength=total)
    off = np.repeat(node_ptr[:-1], np.diff(edge_ptr))
    edge_index = np.stack([row - off, col - off]).astype(np.int64)
    return x, edge_index, edge_attr, edge_ptr


# -- the dataset ---------------------------------------------------------------------------------
class QM9(InMemoryDataset):
    """PyG-compatible QM9 built from qm9pack (see module docstring).

    Args:
        root: cache dir (default $QM9_ROOT or <project>/data/qm9); files go to root/processed.
        features: "pyg" (x columns 6-9 zero, as in PyG's file) or "chem" (aromatic and sp/sp2/sp3
            flags from the sanitized SMILES).
        ghost_bonds: keep the distance-rule C-C "ghost bonds" PyG has (True) or use the SMILES
            graph only (False).
        keep_smiles: attach the GDB-17 SMILES as `data.smiles` (PyG's own smiles differ in form).
        limit: build only the first `limit` molecules (tests, CPU demos); separate cache entry.
        progress: tqdm bar while building.
    """

    def __init__(self, root: str | os.PathLike | None = None, transform: Callable | None = None,
                 pre_transform: Callable | None = None, pre_filter: Callable | None = None,
                 features: str = "pyg", ghost_bonds: bool = True, keep_smiles: bool = False,
                 limit: int | None = None, progress: bool = True, force_reload: bool = False):
        if features not in FEATURES:
            raise ValueError(f"QM9 features {features!r} unknown; choose one of {FEATURES}")
        if limit is not None and not 0 < int(limit):
            raise ValueError(f"QM9 limit must be positive, got {limit}")
        self.features, self.ghost_bonds, self.keep_smiles = features, bool(ghost_bonds), bool(keep_smiles)
        self.limit = None if limit is None or int(limit) >= NUM_MOLECULES else int(limit)
        self.progress = progress
        self.source_dir = qm9pack_data_dir()
        self.key = {
            "loader_version": LOADER_VERSION, "qm9pack_version": qm9pack_version(),
            "csv_sha256": check_sources(self.source_dir),
            "options": {"heavy_cutoff": HEAVY_CUTOFF, "h_cutoff": H_CUTOFF, "features": self.features,
                        "ghost_bonds": self.ghost_bonds, "keep_smiles": self.keep_smiles,
                        "limit": self.limit,
                        "pre_transform": None if pre_transform is None else repr(pre_transform),
                        "pre_filter": None if pre_filter is None else repr(pre_filter)},
        }
        self.key_hash = hashlib.sha256(json.dumps(self.key, sort_keys=True).encode()).hexdigest()[:16]
        from_env = root is None and bool(os.environ.get("QM9_ROOT"))
        root = default_root() if root is None else Path(root)
        for folder in (root, root / "processed"):
            if folder.exists() and not folder.is_dir():
                key = f"QM9_ROOT={root}" if from_env else f"benchmark.build.root={root}"
                raise InvalidValue(key, f"{folder} is a file, but QM9 needs a folder for its cache "
                                        f"(<root>/processed)",
                                   "point it at a folder (it is created if missing) or unset it to use data/qm9")
        # Many array jobs may start on an empty cache at once: one builds (under an exclusive file
        # lock, writing to temporary names renamed into place), the others wait and then load.
        with build_lock(root / "processed", progress):
            super().__init__(str(root), transform, pre_transform, pre_filter, force_reload=force_reload,
                             log=progress)
        self._load_cache()

    def _load_cache(self) -> None:
        """Load the processed files; a damaged one (truncated, random bytes, hand-edited) is an error
        naming it, never silently rebuilt over or half-used."""
        pt, info = (Path(p) for p in self.processed_paths)
        try:
            self.load(str(pt))
            self.build_info = json.loads(info.read_text())
        except Exception as err:  # torch/pickle/zip/json errors all mean an unreadable cache here
            raise DatasetDamaged(
                f"QM9 cache {pt} (or {info.name} beside it) cannot be read ({brief(err)}); delete both "
                f"files (rm {pt} {info}) and re-run to rebuild it from qm9pack (`make data-qm9` rebuilds the "
                f"full data set, ~1.5 min)") from None

    def _process(self) -> None:
        """PyG's `Dataset._process` without its pre_transform.pt / pre_filter.pt files: PyG reads them
        with torch.load(weights_only=False), so a planted one in a shared cache would run code. This
        cache's key (its file name) already covers the pre_transform/pre_filter; such files are
        neither written nor read here."""
        if not self.force_reload and all(Path(p).exists() for p in self.processed_paths):
            return
        say = self.log and "PYTEST_CURRENT_TEST" not in os.environ  # as PyG: "Processing..." / "Done!"
        if say:
            print("Processing...", file=sys.stderr)
        Path(self.processed_dir).mkdir(parents=True, exist_ok=True)
        self.process()
        if say:
            print("Done!", file=sys.stderr)

    def load(self, path: str, data_cls=Data) -> None:
        _load_storage(self, path)

    def graphs_location(self) -> tuple[Path, str, str]:
        """(folder, file stem, key) of this storage, for the caches derived from it (`PrecomputedGraphs`)."""
        pt = Path(self.processed_paths[0])
        return pt.parent, pt.stem, self.key_hash

    @property
    def raw_file_names(self) -> list[str]:
        return []  # the raw data is qm9pack's CSVs (checked in __init__), not files under root

    @property
    def processed_file_names(self) -> list[str]:
        stem = f"qm9pack_{self.features}_{self.key_hash}"
        return [stem + ".pt", stem + ".json"]

    def process(self) -> None:
        t0 = time.perf_counter()
        data, slices, info = build(self.source_dir, features=self.features, ghost_bonds=self.ghost_bonds,
                                   keep_smiles=self.keep_smiles, limit=self.limit, progress=self.progress)
        if self.pre_filter is not None or self.pre_transform is not None:
            # PyG's way: per item, filter then transform, then collate.
            items = [separate(data, slices, i) for i in range(len(slices["y"]) - 1)]
            if self.pre_filter is not None:
                items = [d for d in items if self.pre_filter(d)]
            if self.pre_transform is not None:
                items = [self.pre_transform(d) for d in items]
            data, slices = self.collate(items)
        info.update(key=self.key, build_seconds=round(time.perf_counter() - t0, 1))
        # temporary names, then rename: a reader (or a build killed half-way) never sees a torn file;
        # the .json goes last because PyG treats the pair as present only when both exist
        pt, meta = Path(self.processed_paths[0]), Path(self.processed_paths[1])
        tmp = pt.with_name(f"{pt.name}.{os.getpid()}.tmp")
        torch.save((data.to_dict(), slices, type(data)), tmp)
        os.replace(tmp, pt)
        tmp = meta.with_name(f"{meta.name}.{os.getpid()}.tmp")
        tmp.write_text(json.dumps(info, indent=1))
        os.replace(tmp, meta)


def _load_storage(dataset: InMemoryDataset, path: str) -> None:
    """InMemoryDataset.load with torch.load(weights_only=True) and no fallback: PyG's own loader
    retries a file that needs other globals with weights_only=False, which would run a planted
    pickle. Tensors, plain containers and PyG's Data classes (which PyG registers as safe) only."""
    out = torch.load(path, weights_only=True)
    if not (isinstance(out, tuple) and len(out) == 3 and isinstance(out[0], dict)):
        raise ValueError(f"not a QM9 storage file of this suite (a {type(out).__name__})")
    data, dataset.slices, data_cls = out
    if not (isinstance(data_cls, type) and issubclass(data_cls, Data)):
        raise ValueError(f"not a QM9 storage file of this suite (stores a {data_cls!r})")
    dataset.data = data_cls.from_dict(data)


@contextlib.contextmanager
def build_lock(processed: Path, verbose: bool = True):
    """Exclusive lock on <processed>/.build.lock (released by the kernel if the holder dies)."""
    processed.mkdir(parents=True, exist_ok=True)
    with open(processed / ".build.lock", "a+") as f:
        try:
            fcntl.lockf(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            if verbose:
                print(f"[qm9] another process is building the cache in {processed}; waiting for it", flush=True)
            fcntl.lockf(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.lockf(f, fcntl.LOCK_UN)


def separate(data: Data, slices: dict, i: int) -> Data:
    """Item i of a collated (data, slices) pair."""
    out = {}
    for k, v in data.to_dict().items():
        a, b = int(slices[k][i]), int(slices[k][i + 1])
        if k == "edge_index":
            out[k] = v[:, a:b]
        elif isinstance(v, list):
            out[k] = v[a] if b == a + 1 else v[a:b]
        elif k == "idx":
            out[k] = int(v[a])
        else:
            out[k] = v[a:b]
    return Data(**out)


def build(data_dir: Path, features: str = "pyg", ghost_bonds: bool = True, keep_smiles: bool = False,
          limit: int | None = None, progress: bool = True):
    """Builds the collated PyG storage directly (same layout as InMemoryDataset.collate, without
    creating 130k Data objects). Returns (data, slices, build_info)."""
    from tqdm import tqdm

    df = read_csvs(data_dir, limit)
    m = len(df)
    smiles = df["SMILES"].tolist()
    elements = [parse_elements(s) for s in df["Elements"].tolist()]
    n_atoms = np.array([len(e) for e in elements], dtype=np.int64)
    if not np.array_equal(n_atoms, df["N_atoms"].to_numpy()):
        raise DatasetNotFound(f"QM9: Elements and N_atoms disagree in {data_dir}; `{INSTALL_HINT}`.")
    z_all = np.array([ATOMIC_NUMBER[a] for e in elements for a in e], dtype=np.int64)
    # '[[x,y,z],...]' strings: bracket-strip-and-split (json rejects tokens like '0.')
    xyz_all = np.array(",".join(s.replace("[", "").replace("]", "") for s in df["XYZ_Ang"].tolist())
                       .split(","), dtype=np.float64).reshape(-1, 3)
    if len(xyz_all) != len(z_all):
        raise DatasetNotFound(f"QM9: coordinate count differs from atom count in {data_dir}.")
    node_ptr = np.concatenate([[0], np.cumsum(n_atoms)])
    counts = np.zeros((m, 5), dtype=np.int64)
    mol_of_atom = np.repeat(np.arange(m), n_atoms)
    np.add.at(counts, (mol_of_atom, np.searchsorted(np.array([1, 6, 7, 8, 9]), z_all)), 1)
    y = compute_targets(df, counts)

    mol, bi, bj = all_distance_bonds(z_all, xyz_all, node_ptr)
    bond_ptr = np.concatenate([[0], np.cumsum(np.bincount(mol, minlength=m))])
    orders = np.ones(len(mol), dtype=np.int64)
    in_template = np.ones(len(mol), dtype=bool)
    chem_all = np.zeros((len(z_all), 4), dtype=np.float32) if features == "chem" else None
    orders_of = _BondOrders(features)
    sources = dict.fromkeys(BOND_SOURCES, 0)
    fallback_names = []
    index = df["Index"].to_numpy()
    for k in tqdm(range(m), desc="QM9 build", unit="mol", disable=not progress, mininterval=1.0):
        a, b = node_ptr[k], node_ptr[k + 1]
        p, q = bond_ptr[k], bond_ptr[k + 1]
        bonds = np.stack([bi[p:q], bj[p:q]], 1)
        o, chem, source, tmpl = orders_of(smiles[k], z_all[a:b], xyz_all[a:b], bonds)
        orders[p:q], in_template[p:q] = o, tmpl
        if chem is not None:
            chem_all[a:b] = chem
        sources[source] += 1
        if source in ("determine_bond_orders", "all_single"):
            fallback_names.append(f"gdb_{index[k]}:{source}")
    ghost_total = int((~in_template).sum())
    if not ghost_bonds:
        mol, bi, bj, orders = mol[in_template], bi[in_template], bj[in_template], orders[in_template]
    x, edge_index, edge_attr, edge_ptr = collate_graphs(z_all, node_ptr, mol, bi, bj, orders, chem_all)

    store = dict(
        x=torch.from_numpy(x),
        z=torch.from_numpy(z_all),
        pos=torch.from_numpy(np.round(xyz_all, 4).astype(np.float32)),
        edge_index=torch.from_numpy(edge_index),
        edge_attr=torch.from_numpy(edge_attr),
        y=torch.from_numpy(y),
        name=[f"gdb_{i}" for i in index.tolist()],
        idx=torch.from_numpy(index.astype(np.int64) - 1),
    )
    if keep_smiles:
        store["smiles"] = smiles
    node_slice = torch.from_numpy(node_ptr)
    edge_slice = torch.from_numpy(edge_ptr)
    graph_slice = torch.arange(m + 1)
    slices = {"x": node_slice, "z": node_slice.clone(), "pos": node_slice.clone(),
              "edge_index": edge_slice, "edge_attr": edge_slice.clone(), "y": graph_slice,
              "name": graph_slice.clone(), "idx": graph_slice.clone()}
    if keep_smiles:
        slices["smiles"] = graph_slice.clone()
    info = {"molecules": m, "nodes": int(node_ptr[-1]), "directed_edges": int(edge_ptr[-1]),
            "bond_order_sources": sources, "ghost_bonds_found": ghost_total,
            "ghost_bonds_kept": bool(ghost_bonds), "fallbacks": fallback_names,
            "edge_type_counts": {t: int(c) for t, c in zip(("single", "double", "triple", "aromatic"),
                                                           store["edge_attr"].sum(0).long().tolist())}}
    log.info("QM9 build: %s", {k: v for k, v in info.items() if k != "fallbacks"})
    return Data(**store), slices, info


def missing_indices(dataset: QM9) -> np.ndarray:
    """0-based QM9 indices (of the 133,885) absent from `dataset` (PyG skips 3,054)."""
    idx = dataset._data.idx.numpy()
    top = idx.max() + 1 if dataset.limit is not None else 133_885
    return np.setdiff1d(np.arange(top), idx)


# -- fixture: random molecules in the same storage format, no qm9pack or RDKit needed ------------
FIXTURE_FILE = "qm9_fixture.pt"


class QM9File(InMemoryDataset):
    """A collated QM9-format storage file (as `write_fixture` writes it): the same fields as `QM9`,
    loaded without qm9pack. `limit` is the number of molecules, which are the first positions of
    the LibMTL split permutation's index space (so split rules apply as with `QM9(limit=n)`)."""

    def __init__(self, path: str | os.PathLike, transform: Callable | None = None):
        path = Path(path)
        if not path.is_file():
            raise DatasetNotFound(f"QM9 fixture file {path} does not exist; write one with "
                                  f"mtl.datasets.qm9.write_fixture(<dir>)")
        super().__init__(None, transform, log=False)
        _load_storage(self, str(path))
        self.limit = len(self)
        self.path = path

    def graphs_location(self) -> tuple[Path, str, str]:
        """(folder, file stem, key) for the caches derived from this file: its folder, its name and its
        sha256 (an edited fixture gets new derived files)."""
        return self.path.parent, self.path.stem, sha256(self.path)[:16]


def write_fixture(root: str | os.PathLike, n: int = 300, seed: int = 0, max_atoms: int = 9) -> Path:
    """Write `n` random molecules (2..max_atoms atoms of H C N O F, random 3-D positions, bonds by
    the distance rule, random targets) as a collated QM9-format file under `root`; returns its path
    (pass it as the QM9 benchmark's `data_file`). For tests and GPU smoke runs on machines without
    qm9pack/RDKit; the numbers mean nothing chemically."""
    rng = np.random.default_rng(seed)
    items = []
    for i in range(n):
        k = int(rng.integers(2, max_atoms + 1))
        z = rng.choice(np.array([1, 6, 7, 8, 9]), size=k, p=[0.45, 0.35, 0.08, 0.1, 0.02])
        pos = rng.normal(scale=1.0, size=(k, 3))
        bonds = distance_bonds(z, pos)
        orders = rng.integers(1, 4, size=len(bonds))
        x, edge_index, edge_attr, _ = collate_graphs(
            z, np.array([0, k]), np.zeros(len(bonds), dtype=np.int64), bonds[:, 0], bonds[:, 1], orders, None)
        items.append(Data(x=torch.from_numpy(x), z=torch.from_numpy(z.astype(np.int64)),
                          pos=torch.from_numpy(pos.astype(np.float32)), edge_index=torch.from_numpy(edge_index),
                          edge_attr=torch.from_numpy(edge_attr),
                          y=torch.from_numpy(rng.normal(size=(1, len(TARGETS))).astype(np.float32)),
                          name=f"fixture_{i}", idx=torch.tensor([i])))
    path = Path(root) / FIXTURE_FILE
    path.parent.mkdir(parents=True, exist_ok=True)
    InMemoryDataset.save(items, str(path))
    return path


# -- the model's input graphs, precomputed once -------------------------------------------------
# The MPNN of the references sees each molecule through PyG's `Complete()` (every ordered atom pair
# i != j, row-major, bonded pairs keeping their 4-d bond one-hot, the others zeros) and
# `Distance(norm=False)` (the Euclidean distance appended as a 5th feature), applied per molecule
# per epoch. `precomputed_graphs` computes the same edges once, vectorised over all molecules, and
# caches them next to the source storage, so loading a batch is slicing and collation only.
GRAPHS = ("complete", "bonds")
GRAPHS_VERSION = "1"


def _graph_edges(edge_index: torch.Tensor, edge_slice: torch.Tensor, node_slice: torch.Tensor,
                 pos: torch.Tensor, graph: str, chunk: int = 1 << 20):
    """The transformed edges of every molecule of a collated storage.

    Returns (edge_index [2, E] local node indices, source [E] index of the stored bond whose
    attributes the edge carries or -1 for none, dist [E] float32, edge_slice [M+1])."""
    if graph not in GRAPHS:
        raise ValueError(f"qm9: graph={graph!r} unknown; choose one of {GRAPHS}")
    sizes = node_slice.diff()
    m = len(sizes)
    if graph == "bonds":
        out_index, source, out_slice = edge_index.clone(), torch.arange(edge_index.shape[1]), edge_slice.clone()
    else:
        per_mol = sizes * (sizes - 1)
        out_slice = torch.cat([torch.zeros(1, dtype=torch.long), per_mol.cumsum(0)])
        total = int(out_slice[-1])
        out_index = torch.empty((2, total), dtype=torch.long)
        for n in sizes.unique().tolist():
            mols = torch.nonzero(sizes == n).flatten()
            if n < 2:
                continue
            ar = torch.arange(n)
            row, col = ar.repeat_interleave(n), ar.repeat(n)  # Complete(): row-major pairs ...
            keep = row != col                                 # ... without self loops
            tmpl = torch.stack([row[keep], col[keep]])        # [2, n(n-1)]
            where = (out_slice[mols][:, None] + torch.arange(n * (n - 1))[None, :]).flatten()
            out_index[:, where] = tmpl.repeat(1, len(mols))
        # each stored bond (i, j) of molecule k lands at position i*(n-1) + j - (j > i) of k's block;
        # self loops are dropped, as Complete's remove_self_loops does
        source = torch.full((total,), -1, dtype=torch.long)
        mol = torch.repeat_interleave(torch.arange(m), edge_slice.diff())
        i, j = edge_index
        n = sizes[mol]
        ok = i != j
        at = out_slice[mol] + i * (n - 1) + j - (j > i).long()
        at, k = at[ok], torch.nonzero(ok).flatten()
        if len(at.unique()) != len(at):
            raise ValueError("qm9: the stored graph has duplicate bonds; Complete() would keep an arbitrary "
                             "one of their attributes, so it cannot be precomputed (use precompute=false)")
        source[at] = k
    # Distance(norm=False): torch.norm(pos[col] - pos[row], p=2, dim=-1), in float32 like the transform
    node_off = torch.repeat_interleave(node_slice[:-1], out_slice.diff())
    dist = torch.empty(out_index.shape[1], dtype=pos.dtype)
    for a in range(0, len(dist), chunk):
        r = out_index[0, a:a + chunk] + node_off[a:a + chunk]
        c = out_index[1, a:a + chunk] + node_off[a:a + chunk]
        dist[a:a + chunk] = torch.norm(pos[c] - pos[r], p=2, dim=-1)
    return out_index, source, dist, out_slice


class PrecomputedGraphs(InMemoryDataset):
    """A QM9 storage (`QM9` or `QM9File`) whose items carry the model's input graph already: the
    same x, z, pos, y, name, idx tensors (shared, not copied) with edge_index/edge_attr replaced by
    those of `reference_transform(graph)` (`mtl.benchmarks.qm9`), bit for bit. The transformed edges
    are cached in `<source stem>_<graph>_<key>.pt` beside the source storage, built once under the
    source's build lock; storage there is compact (int16 local indices, int32 bond ids, float32
    distances) and expanded to the usual int64 / [E, 5] float32 tensors when loaded."""

    def __init__(self, source: InMemoryDataset, graph: str = "complete", progress: bool = True):
        if graph not in GRAPHS:
            raise ValueError(f"qm9: graph={graph!r} unknown; choose one of {GRAPHS}")
        super().__init__(None, log=False)
        self.source, self.graph, self.limit = source, graph, source.limit
        folder, stem, source_key = source.graphs_location()
        self.key = {"version": GRAPHS_VERSION, "graph": graph, "source": source_key}
        key_hash = hashlib.sha256(json.dumps(self.key, sort_keys=True).encode()).hexdigest()[:12]
        self.path = Path(folder) / f"{stem}_{graph}_{key_hash}.pt"
        with build_lock(Path(folder), progress):
            if not self.path.is_file():
                self._build(progress)
        self._load()

    def _build(self, progress: bool) -> None:
        t0 = time.perf_counter()
        data, slices = self.source._data, self.source.slices
        edge_index, source, dist, edge_slice = _graph_edges(
            data.edge_index, slices["edge_index"], slices["pos"], data.pos, self.graph)
        small = int(slices["pos"].diff().max()) < 2 ** 15 and (len(source) == 0 or int(source.max()) < 2 ** 31)
        store = {"key": self.key, "edge_slice": edge_slice, "dist": dist,
                 "edge_index": edge_index.to(torch.int16 if small else torch.long),
                 "source": source.to(torch.int32 if small else torch.long),
                 "build_seconds": round(time.perf_counter() - t0, 2)}
        tmp = self.path.with_name(f"{self.path.name}.{os.getpid()}.tmp")
        torch.save(store, tmp)
        os.replace(tmp, self.path)  # atomic: a reader never sees a torn file
        if progress:
            print(f"[qm9] precomputed {self.graph} graphs ({edge_slice[-1]:,} edges, "
                  f"{time.perf_counter() - t0:.1f} s) -> {self.path}", flush=True)

    def _load(self) -> None:
        data, slices = self.source._data, self.source.slices
        try:
            store = torch.load(self.path, weights_only=True)
            edge_slice = store["edge_slice"]
            ok = (store["key"] == self.key and len(edge_slice) == len(slices["pos"])
                  and store["edge_index"].shape == (2, int(edge_slice[-1]))
                  and store["source"].shape == store["dist"].shape == (int(edge_slice[-1]),))
            if not ok:
                raise ValueError("contents do not match the source storage")
        except Exception as err:  # torch/pickle/zip errors or wrong contents: an unusable cache file
            raise DatasetDamaged(
                f"QM9 precomputed-graph cache {self.path} cannot be used ({brief(err)}); delete it "
                f"(rm {self.path}) and re-run to rebuild it (seconds; ~20 s on 2 cores for "
                f"the full complete graphs), or set benchmark.build.precompute=false") from None
        source = store["source"].long()
        attr = data.edge_attr
        edge_attr = attr.new_zeros((len(source), attr.shape[1] + 1))
        has = source >= 0
        edge_attr[has, :-1] = attr[source[has]]
        edge_attr[:, -1] = store["dist"].to(attr.dtype)
        fields = {k: v for k, v in data.to_dict().items() if k not in ("edge_index", "edge_attr")}
        self.data = Data(**fields, edge_index=store["edge_index"].long(), edge_attr=edge_attr)
        self.slices = {**slices, "edge_index": edge_slice, "edge_attr": edge_slice.clone()}
        self.build_seconds = store.get("build_seconds")

    def batch(self, ids) -> Batch:
        """The PyG Batch of the molecules at storage positions `ids`, equal to
        `Batch.from_data_list([self[i] for i in ids])` (tested: values, slices, increments) but gathered
        with one index operation per field instead of one Data object per molecule. The index
        arithmetic is numpy's: torch's repeat_interleave on these small inputs goes through its thread
        pool, which costs ~30 ms a batch instead of ~1 when the cores are busy (2 threads, load 5)."""
        ids = np.asarray(ids, dtype=np.int64)
        nodes = self.slices["pos"].numpy()
        num_nodes = nodes[ids + 1] - nodes[ids]
        node_inc = np.cumsum(num_nodes) - num_nodes
        out, slice_dict, inc_dict = {}, {}, {}
        for key, value in self._data.to_dict().items():
            bounds = self.slices[key].numpy()
            start, count = bounds[ids], bounds[ids + 1] - bounds[ids]
            ends = np.cumsum(count)
            slice_dict[key] = torch.from_numpy(np.concatenate([[0], ends]))
            if isinstance(value, list):  # graph-level strings (name, smiles): one per molecule
                out[key], inc_dict[key] = [value[i] for i in start.tolist()], None
                continue
            at = torch.from_numpy(np.arange(ends[-1] if len(ends) else 0) + np.repeat(start - (ends - count), count))
            if key == "edge_index":
                out[key] = value[:, at] + torch.from_numpy(np.repeat(node_inc, count))
                inc_dict[key] = torch.from_numpy(node_inc)
            else:  # every other field of the storage is concatenated along dim 0 without increment
                out[key], inc_dict[key] = value[at], torch.zeros(len(ids), dtype=torch.long)
        b = Batch(_base_cls=Data)
        for key, value in out.items():
            b[key] = value
        b.batch = torch.from_numpy(np.repeat(np.arange(len(ids)), num_nodes))
        b.ptr = torch.from_numpy(np.concatenate([[0], np.cumsum(num_nodes)]))
        b._slice_dict, b._inc_dict, b._num_graphs = slice_dict, inc_dict, len(ids)
        return b


class GraphBatches(torch.utils.data.Dataset):
    """Molecules `positions` of a `PrecomputedGraphs`: item i is one molecule (a Data), a list of
    item numbers is their Batch in one gather (what `batch_loader`'s sampler asks for)."""

    def __init__(self, graphs: PrecomputedGraphs, positions):
        self.graphs, self.positions = graphs, torch.as_tensor(positions, dtype=torch.long)

    def __len__(self) -> int:
        return len(self.positions)

    def __getitem__(self, i):
        if isinstance(i, (list, tuple, torch.Tensor)):
            return self.graphs.batch(self.positions[torch.as_tensor(i, dtype=torch.long)].numpy())
        return self.graphs[int(self.positions[i])]


def _as_is(batch):
    return batch


def batch_loader(graphs: PrecomputedGraphs, positions, batch_size: int, shuffle: bool = False,
                 generator: torch.Generator | None = None, **kw) -> torch.utils.data.DataLoader:
    """A DataLoader of Batches of `positions`, each gathered at once (`PrecomputedGraphs.batch`).
    Its sampler is built as torch builds it for `shuffle=True` (RandomSampler on the loader's
    generator, then batches of `batch_size`), so it yields the molecules in the same batches as
    torch_geometric's DataLoader with the same generator state. kw: num_workers, pin_memory, ..."""
    data = GraphBatches(graphs, positions)
    order = (torch.utils.data.RandomSampler(data, generator=generator) if shuffle
             else torch.utils.data.SequentialSampler(data))
    return torch.utils.data.DataLoader(data, sampler=torch.utils.data.BatchSampler(order, batch_size, False),
                                       batch_size=None, collate_fn=_as_is, generator=generator, **kw)


def prepare(root: str | None = None, features: str = "pyg", ghost_bonds: bool = True, limit: int | None = None,
            progress: bool = True, graph: str = "complete", precompute: bool = True) -> Path:
    """Build the QM9 cache (and its precomputed graphs) if absent, before jobs start;
    returns its folder."""
    ds = QM9(root=root, features=features, ghost_bonds=ghost_bonds, limit=limit, progress=progress)
    if precompute:
        PrecomputedGraphs(ds, graph, progress=progress)
    return Path(ds.processed_dir)
