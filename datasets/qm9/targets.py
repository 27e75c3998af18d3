"""QM9's 19 regression targets in PyG's column order and units, computed from qm9pack's columns
(Hartree -> eV, atomization energies from the atom references)."""
from __future__ import annotations

import numpy as np

# PyG torch_geometric/datasets/qm9.py constants (current master).
HAR2EV = 27.211386246
KCALMOL2EV = 0.04336414
HARTREE2KCALMOL = 627.509  # DeepChem's factor for the *_atom columns (back-computed from gdb_1/2)
# PyG y column order, with the qm9pack column each comes from (None: atomization, derived).
TARGETS = ("mu", "alpha", "homo", "lumo", "gap", "r2", "zpve", "U0", "U", "H", "G", "cv",
           "U0_atom", "U_atom", "H_atom", "G_atom", "A", "B", "C")
SOURCE_COLUMNS = {
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


def compute_targets(df, counts: np.ndarray) -> np.ndarray:
    """y [M, 19] float32 in PyG units with PyG's float32 arithmetic.

    counts: [M, 5] atoms per element (H, C, N, O, F), for the atomization energies, which are
    DeepChem's round((E - sum atomref) * 627.509, 9) kcal/mol times float32 KCALMOL2EV."""
    out = np.empty((len(df), len(TARGETS)), dtype=np.float32)
    for j, name in enumerate(TARGETS):
        if name in _ATOM_ENERGY:
            src, ref_col = _ATOM_ENERGY[name]
            e = df[SOURCE_COLUMNS[src]].to_numpy(np.float64)
            raw = np.round((e - counts.astype(np.float64) @ ATOMREF[:, ref_col]) * HARTREE2KCALMOL, 9)
        else:
            raw = df[SOURCE_COLUMNS[name]].to_numpy(np.float64)
        col = raw.astype(np.float32)
        if name in _FACTORS:
            col = col * np.float32(_FACTORS[name])
        out[:, j] = col
    return out
