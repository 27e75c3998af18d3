"""Bond perception: which atom pairs of a molecule's geometry are bonds (a distance rule that
reproduces PyG's edges), their orders (from the kekulized GDB-17 SMILES, RDKit while building
only), and the collated graph tensors (x, edge_index, edge_attr) of many molecules at once."""
from __future__ import annotations

import logging

import numpy as np

ELEMENTS = ("H", "C", "N", "O", "F")
ATOMIC_NUMBER = {"H": 1, "C": 6, "N": 7, "O": 8, "F": 9}
# Distance rule (Å) that reproduces PyG's edge total exactly; computed on float64 coordinates.
HEAVY_CUTOFF = 1.81
H_CUTOFF = 1.35
FEATURES = ("pyg", "chem")
BOND_SOURCES = ("template", "template+ghost", "determine_bond_orders", "all_single")

log = logging.getLogger(__name__)


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
