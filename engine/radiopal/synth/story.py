"""The clinical story of one synthetic patient: a complete, contract-valid document drawn from a seeded generator."""

from __future__ import annotations

import datetime as dt
import random
from typing import Final

from ._common import Doc, chance, pick

FIRST_DAY: Final = dt.date(2024, 1, 1)
DAYS_IN_RANGE: Final = (dt.date(2026, 12, 31) - FIRST_DAY).days + 1

_BODY_SITES: Final = (
    "cervical spine", "thoracic spine", "lumbar spine", "sacrum", "pelvis", "left hip", "right hip", "left femur",
    "right femur", "ribs", "sternum", "left humerus", "right humerus", "skull", "left scapula", "right scapula",
)


class Builder:
    """Builds one valid document from a seeded generator; the sections are drawn in a fixed order."""

    def __init__(self, rng: random.Random, *, patient_id: str) -> None:
        self.rng = rng
        self.patient_id = patient_id
        self.today = FIRST_DAY + dt.timedelta(days=rng.randrange(DAYS_IN_RANGE))
        # A "clean" patient has no blocking finding: it keeps recommended/eligible answers frequent in the cohort.
        self.clean = chance(rng, 0.3)
        self.oligo = chance(rng, 0.1)
        self.site: str = pick(rng, [("prostate", 44), ("breast", 30), ("lung", 8), ("renal", 5), ("myeloma", 5),
                                     ("thyroid", 3), ("other", 5)])
        if self.site == "prostate":
            self.sex = "male"
        elif self.site == "breast":
            self.sex = "female" if chance(rng, 0.98) else "male"
        else:
            self.sex = "male" if chance(rng, 0.55) else "female"
        self.crpc = self.site == "prostate" and chance(rng, 0.78)
        self.age = 0
        self.weight = 0.0
        self.lesion_count = 0
        self.painful_sites: list[str] = []
        self.has_bisphosphonate = False
        self.marrow_suppressed = False

    def day(self, days_before: int) -> str:
        """The ISO date ``days_before`` days before the evaluation date."""
        return (self.today - dt.timedelta(days=days_before)).isoformat()

    def build(self) -> Doc:
        """The whole document, in contract §A.1 order."""
        doc: Doc = {"schema_version": "1.0", "patient_id": self.patient_id, "evaluation_date": self.today.isoformat()}
        context = self.context()
        if context:
            doc["context"] = context
        doc["demographics"] = self.demographics()
        doc["primary_tumour"] = self.primary_tumour()
        doc["bone_disease"] = self.bone_disease()
        doc["pain"] = self.pain()
        doc["performance"] = self.performance()
        treatment_history = self.treatment_history()
        doc["labs"] = self.labs()
        doc["dental"] = self.dental()
        doc["treatment_history"] = treatment_history
        return doc

    def context(self) -> Doc:
        rng = self.rng
        context: Doc = {}
        region = pick(rng, [("EU", 40), ("US", 30), ("other", 20), (None, 10)])
        if region is not None:
            context["regulatory_region"] = region
        trial = pick(rng, [(True, 10), (False, 50), (None, 40)])
        if trial is not None:
            context["trial_available"] = trial
        if chance(rng, 0.5):
            context["availability"] = {name: chance(rng, 0.3) for name in ("re186", "re188", "p32")}
        return context

    def demographics(self) -> Doc:
        rng = self.rng
        if self.site == "prostate":
            self.age = round(rng.triangular(55, 90, 72))
        elif self.site == "breast":
            self.age = round(rng.triangular(28, 88, 60))
        else:
            self.age = round(rng.triangular(35, 88, 66))
        if self.sex == "male":
            self.weight = round(min(max(rng.gauss(80, 13), 45), 140), 1)
        else:
            self.weight = round(min(max(rng.gauss(68, 12), 40), 130), 1)
        demographics: Doc = {"age_years": self.age, "sex": self.sex}
        if chance(rng, 0.9):
            demographics["weight_kg"] = self.weight
        if self.sex == "female":
            fertile = self.age < 50 and not self.clean
            pregnant = fertile and chance(rng, 0.15)
            demographics["pregnant"] = pregnant
            demographics["breastfeeding"] = fertile and not pregnant and chance(rng, 0.12)
        return demographics

    def primary_tumour(self) -> Doc:
        rng = self.rng
        tumour: Doc = {"site": self.site}
        if self.site == "prostate":
            tumour["castration_resistant"] = self.crpc
        if self.oligo:
            tumour["primary_controlled"] = True
        elif chance(rng, 0.7):
            tumour["primary_controlled"] = chance(rng, 0.5)
        if self.site == "myeloma":
            tumour["radiosensitive_histology"] = True
        elif chance(rng, 0.6):
            tumour["radiosensitive_histology"] = self.site == "other" and chance(rng, 0.2)
        return tumour

    def bone_disease(self) -> Doc:
        rng = self.rng
        pattern_weights = {
            "prostate": [("osteoblastic", 80), ("mixed", 15), ("osteolytic", 2), ("unknown", 3)],
            "breast": [("mixed", 45), ("osteolytic", 30), ("osteoblastic", 20), ("unknown", 5)],
            "lung": [("osteolytic", 60), ("mixed", 30), ("osteoblastic", 5), ("unknown", 5)],
            "renal": [("osteolytic", 90), ("mixed", 10)],
            "thyroid": [("osteolytic", 80), ("mixed", 20)],
            "myeloma": [("osteolytic", 95), ("unknown", 5)],
            "other": [("osteolytic", 35), ("mixed", 30), ("osteoblastic", 25), ("unknown", 10)],
        }[self.site]
        pattern = pick(rng, pattern_weights)
        if self.clean and self.site in {"prostate", "breast"} and pattern not in {"osteoblastic", "mixed"}:
            pattern = "mixed"
        if self.oligo:
            lesions = rng.randint(1, 3)
        else:
            low, high = pick(rng, [((1, 1), 8), ((2, 5), 25), ((6, 20), 47), ((21, 60), 20)])
            lesions = rng.randint(low, high)
        self.lesion_count = lesions
        visceral_p = {"prostate": 0.1, "breast": 0.35, "lung": 0.5, "renal": 0.4, "thyroid": 0.3, "myeloma": 0.0,
                      "other": 0.35}[self.site]
        visceral = not self.oligo and not (self.clean and self.site == "prostate") and chance(rng, visceral_p)
        disease: Doc = {"pattern": pattern, "lesion_count": lesions}
        if self.oligo:
            disease["total_metastases_count"] = lesions + rng.randint(0, 5 - lesions)
        elif chance(rng, 0.85):
            disease["total_metastases_count"] = lesions + (rng.randint(1, 12) if visceral else rng.randint(0, 2))
        disease["bone_scan"] = self.bone_scan(pattern, lesions)
        disease["visceral_metastases"] = visceral
        if self.site == "prostate" and chance(rng, 0.7):
            disease["lymph_node_max_short_axis_cm"] = pick(rng, [
                (round(rng.uniform(0.4, 2.9), 1), 88), (3.0, 4), (round(rng.uniform(3.1, 5.5), 1), 8)])
        scc = "none" if self.clean else pick(rng, [("none", 88), ("impending", 6), ("established", 6)])
        disease["spinal_cord_compression"] = scc
        if scc != "none":
            disease["scc_single_level"] = chance(rng, 0.7)
            disease["paraplegia_over_48h"] = scc == "established" and chance(rng, 0.15)
            disease["neurological_deficit"] = chance(rng, 0.6 if scc == "established" else 0.2)
        elif chance(rng, 0.3):
            disease["neurological_deficit"] = False
        pathological = not self.clean and chance(rng, 0.05)
        impending = not self.clean and chance(rng, 0.09)
        disease["pathological_fracture"] = pathological
        disease["impending_fracture"] = impending
        if impending:
            disease["mirels_score"] = pick(rng, [(6, 1), (7, 2), (8, 3), (9, 3), (10, 2), (11, 1), (12, 1)])
        else:
            mirels = pick(rng, [(None, 70), ("null", 20), ("low", 10)])
            if mirels == "null":
                disease["mirels_score"] = None
            elif mirels == "low":
                disease["mirels_score"] = rng.randint(4, 7)
        return disease

    def bone_scan(self, pattern: str, lesions: int) -> Doc:
        rng = self.rng
        age_days = rng.randint(0, 56) if self.clean or chance(rng, 0.8) else rng.randint(57, 150)
        uptake_weights: list[tuple[bool | None, int]] = {
            "osteoblastic": [(True, 93), (False, 3), (None, 4)],
            "mixed": [(True, 80), (False, 10), (None, 10)],
            "osteolytic": [(True, 25), (False, 45), (None, 30)],
            "unknown": [(True, 40), (False, 20), (None, 40)],
        }[pattern]
        uptake = True if self.clean else pick(rng, uptake_weights)
        scan: Doc = {"date": self.day(age_days), "uptake_at_painful_sites": uptake}
        if chance(rng, 0.7):
            scan["superscan"] = lesions > 20 and not self.clean and chance(rng, 0.3)
        return scan

    def pain(self) -> Doc:
        rng = self.rng
        if self.clean:
            score = rng.randint(3, 9)
        else:
            low, high = pick(rng, [((0, 0), 7), ((1, 3), 18), ((4, 6), 38), ((7, 10), 37)])
            score = rng.randint(low, high)
        if score == 0:
            step = pick(rng, [(0, 60), (1, 15), (2, 15), (3, 10)])
            distribution = "none" if step == 0 and chance(rng, 0.7) else pick(rng, [("localized", 1),
                                                                                     ("multifocal", 1)])
        else:
            step = min(3, max(1, (score + 2) // 3 + pick(rng, [(-1, 15), (0, 70), (1, 15)])))
            if self.oligo or self.lesion_count == 1:
                distribution = "localized"
            else:
                distribution = pick(rng, [("localized", 38), ("multifocal", 62)])
        if distribution == "localized":
            self.painful_sites = rng.sample(_BODY_SITES, 1)
        elif distribution == "multifocal":
            self.painful_sites = sorted(rng.sample(_BODY_SITES, rng.randint(2, 5)))
        pain: Doc = {"score_nrs": score, "distribution": distribution}
        if self.painful_sites and chance(rng, 0.85):
            pain["painful_sites"] = list(self.painful_sites)
        pain["analgesic_step"] = step
        return pain

    def performance(self) -> Doc:
        rng = self.rng
        if self.oligo:
            ecog = rng.randint(0, 1)
        elif self.clean:
            ecog = rng.randint(0, 2)
        else:
            ecog = pick(rng, [(0, 20), (1, 35), (2, 25), (3, 15), (4, 5)])
        low, high = {0: (26, 260), 1: (26, 208), 2: (12, 104), 3: (4, 52), 4: (2, 16)}[ecog]
        if self.oligo or self.clean:
            low = max(low, 27)
            high = max(high, 104)
        weeks = rng.randint(low, high)
        if not (self.clean or self.oligo) and chance(rng, 0.1):
            weeks = rng.choice([5, 6, 12, 13, 26])
        return {"ecog": ecog, "life_expectancy_weeks": weeks}

    # -- labs --

    def labs(self) -> Doc:
        rng = self.rng
        clean = self.clean
        age_days = rng.randint(0, 7) if clean or chance(rng, 0.72) else rng.randint(8, 14)
        labs: Doc = {"date": self.day(age_days)}

        plt = self.platelets()
        wbc = self.wbc()
        anc = round(wbc * rng.uniform(0.45, 0.75), 2)
        if not clean and chance(rng, 0.12):
            anc = rng.choice([1.5, 1.0, 2.0])
        if anc >= wbc:
            wbc = round(anc / rng.uniform(0.5, 0.75), 1)
        hb = self.haemoglobin()
        if self.marrow_suppressed:
            if chance(rng, 0.5):
                plt = rng.choice([rng.randint(25, 49), 49, 50])
            else:
                anc = rng.choice([round(rng.uniform(0.4, 0.99), 2), 0.99, 1.0])
                wbc = max(wbc, round(anc / 0.6, 1))
        unit = pick(rng, [("10^9/L", 60), ("10^3/uL", 20), ("/uL", 20)])
        labs["platelets"] = _cells(plt, unit, 0)
        labs["wbc"] = _cells(wbc, unit, 1)
        labs["anc"] = _cells(anc, unit, 2)
        labs["haemoglobin"] = self.render_hb(hb)

        crcl = self.crcl()
        labs["creatinine_clearance"] = {
            "value": crcl, "unit": "mL/min",
            "method": pick(rng, [("cockcroft_gault", 85), ("egfr", 15)]),
        }
        if chance(rng, 0.6):
            scr = (140 - self.age) * self.weight * (0.85 if self.sex == "female" else 1.0) / (72 * crcl)
            scr = min(max(scr, 0.4), 12.0)
            scr_unit = pick(rng, [("mg/dL", 70), ("umol/L", 30)])
            labs["serum_creatinine"] = _creatinine(scr, scr_unit)
            if self.has_bisphosphonate and chance(rng, 0.7):
                rise = pick(rng, [(round(rng.uniform(0.0, 0.3), 2), 70), (0.5, 8), (1.0, 7),
                                   (round(rng.uniform(0.5, 1.5), 2), 15)])
                baseline = max(0.4, scr - rise)
                labs["serum_creatinine_baseline"] = _creatinine(baseline, scr_unit)
        self.calcium(labs)
        if chance(rng, 0.6):
            labs["alp"] = {"value": round(rng.lognormvariate(5.2, 0.7)), "unit": "U/L"}
        if self.site == "prostate" and chance(rng, 0.8):
            labs["psa"] = {"value": round(rng.lognormvariate(3.0, 1.6), 1),
                           "unit": pick(rng, [("ng/mL", 85), ("ug/L", 15)])}
        if chance(rng, 0.4):
            labs["platelet_trend"] = "stable" if clean else pick(rng, [("stable", 70), ("falling", 15),
                                                                         ("rising", 15)])
        if chance(rng, 0.2):
            labs["dic_suspected"] = not clean and chance(rng, 0.15)
        return labs

    def platelets(self) -> float:
        rng = self.rng
        if self.clean:
            return rng.randint(150, 380)
        if chance(rng, 0.12):
            return rng.choice([100, 60, 50])
        low, high = pick(rng, [((150, 400), 72), ((100, 149), 12), ((60, 99), 8), ((15, 59), 8)])
        return rng.randint(low, high)

    def wbc(self) -> float:
        rng = self.rng
        if self.clean:
            return round(rng.uniform(4.5, 10.0), 1)
        if chance(rng, 0.08):
            return rng.choice([2.4, 3.5])
        low, high = pick(rng, [((4.0, 11.0), 80), ((2.4, 3.9), 12), ((0.8, 2.3), 8)])
        return round(rng.uniform(low, high), 1)

    def haemoglobin(self) -> float:
        rng = self.rng
        if self.clean:
            return round(rng.uniform(11.0, 15.5), 1)
        if chance(rng, 0.05):
            return 10.0
        low, high = pick(rng, [((10.1, 15.5), 75), ((8.0, 9.9), 18), ((6.5, 7.9), 7)])
        return round(rng.uniform(low, high), 1)

    def render_hb(self, hb: float) -> Doc:
        unit = pick(self.rng, [("g/dL", 60), ("g/L", 25), ("mmol/L", 15)])
        if unit == "g/L":
            return {"value": round(hb * 10), "unit": unit}
        if unit == "mmol/L":
            return {"value": round(hb / 1.611, 2), "unit": unit}
        return {"value": hb, "unit": unit}

    def crcl(self) -> float:
        rng = self.rng
        if self.clean:
            return rng.randint(61, 125)
        if chance(rng, 0.12):
            return rng.choice([60, 50, 40, 30, 10])
        low, high = pick(rng, [((61, 130), 62), ((50, 60), 12), ((40, 49.9), 9), ((30, 39.9), 7),
                                ((10, 29.9), 7), ((4, 9.9), 3)])
        value = rng.uniform(low, high)
        return round(value, 1) if chance(rng, 0.2) else min(round(value), int(high))

    def calcium(self, labs: Doc) -> None:
        rng = self.rng
        if self.clean:
            ca_corr = rng.uniform(2.15, 2.60)
        else:
            low, high = pick(rng, [((2.12, 2.62), 80), ((1.80, 2.09), 9), ((2.10, 2.10), 3), ((2.65, 3.30), 8)])
            ca_corr = rng.uniform(low, high)
        ca_corr = round(ca_corr, 2)
        unit = pick(rng, [("mmol/L", 70), ("mg/dL", 30)])
        corrected = chance(rng, 0.6)
        albumin_g_l = rng.randint(22, 46)
        total = ca_corr if corrected else ca_corr - 0.02 * (40 - albumin_g_l)
        value = round(total, 2) if unit == "mmol/L" else round(total / 0.2495, 1)
        labs["calcium"] = {"value": value, "unit": unit, "corrected": corrected}
        if not corrected or chance(rng, 0.5):
            albumin_unit = pick(rng, [("g/L", 70), ("g/dL", 30)])
            labs["albumin"] = {"value": albumin_g_l if albumin_unit == "g/L" else albumin_g_l / 10,
                               "unit": albumin_unit}
        if chance(rng, 0.3):
            lln = pick(rng, [(2.10, 60), (2.15, 25), (2.20, 15)])
            if chance(rng, 0.25):
                labs["calcium_lln"] = {"value": round(lln / 0.2495, 1), "unit": "mg/dL"}
            else:
                labs["calcium_lln"] = {"value": lln, "unit": "mmol/L"}

    # -- dental --

    def dental(self) -> Doc:
        rng = self.rng
        dental: Doc = {}
        exam = pick(rng, [(True, 70), (False, 20), (None, 10)])
        if exam is not None:
            dental["exam_done"] = exam
            if exam and chance(rng, 0.8):
                dental["exam_date"] = self.day(rng.randint(7, 400))
        dental["unhealed_oral_lesion"] = not self.clean and chance(rng, 0.07)
        if chance(rng, 0.5):
            dental["planned_invasive_procedure"] = not self.clean and chance(rng, 0.1)
        return dental

    # -- treatment history --

    def treatment_history(self) -> Doc:
        rng = self.rng
        hormonal = self.hormonal()
        chemotherapy = self.chemotherapy()
        history: Doc = {
            "chemotherapy": chemotherapy,
            "radionuclides": self.radionuclides(),
            "ebrt": self.ebrt(),
            "bone_health_agents": self.bone_health_agents(),
            "hormonal": hormonal,
        }
        if self.crpc:
            lines = sum(1 for h in hormonal if h["agent"] not in {"adt_lhrh", "tamoxifen", "aromatase_inhibitor"})
            lines += sum(1 for c in chemotherapy if c["agent"] in {"docetaxel", "cabazitaxel", "doxorubicin"})
            if chance(rng, 0.9):
                history["prior_mcrpc_systemic_lines"] = lines
            if chance(rng, 0.4):
                history["ineligible_for_other_mcrpc_therapy"] = chance(rng, 0.12)
        if chance(rng, 0.08):
            history["hypersensitivity"] = [pick(rng, [("phosphonates", 60), ("cisplatin", 20), ("iodine", 20)])]
        return history

    def hormonal(self) -> list[Doc]:
        rng = self.rng
        entries: list[Doc] = []
        if self.site == "prostate":
            adt_start = rng.randint(200, 3000)
            if chance(rng, 0.95):
                entries.append({"agent": "adt_lhrh", "start_date": self.day(adt_start), "ongoing": True})
            agents = ["abiraterone", "enzalutamide", "apalutamide", "darolutamide"]
            count = pick(rng, [(0, 25), (1, 45), (2, 30)]) if self.crpc else pick(rng, [(0, 55), (1, 45)])
            begin = adt_start - rng.randint(30, 180)
            for position, agent in enumerate(rng.sample(agents, count)):
                if begin < 10:
                    break
                ongoing = position == count - 1 and chance(rng, 0.45 if agent == "abiraterone" else 0.35)
                if self.clean and agent == "abiraterone":
                    ongoing = False
                entry: Doc = {"agent": agent, "start_date": self.day(begin)}
                if ongoing:
                    entry["ongoing"] = True
                else:
                    end = max(1, begin - rng.randint(60, 700))
                    entry["end_date"] = self.day(end)
                    entry["ongoing"] = False
                    begin = end - rng.randint(0, 60)
                entries.append(entry)
        elif self.site == "breast" and chance(rng, 0.65):
            agent = "aromatase_inhibitor" if self.age >= 52 or chance(rng, 0.3) else "tamoxifen"
            begin = rng.randint(60, 2500)
            entry = {"agent": agent, "start_date": self.day(begin)}
            if chance(rng, 0.6):
                entry["ongoing"] = True
            else:
                entry["end_date"] = self.day(rng.randint(1, begin - 1))
                entry["ongoing"] = False
            entries.append(entry)
        elif self.site not in {"prostate", "breast"} and chance(rng, 0.05):
            entries.append({"agent": "other", "start_date": self.day(rng.randint(30, 900)), "ongoing": True})
        return entries

    def chemotherapy(self) -> list[Doc]:
        rng = self.rng
        if self.site == "prostate":
            return self.prostate_chemotherapy()
        catalogue: dict[str, list[tuple[tuple[str, str, bool], float]]] = {
            "breast": [(("paclitaxel", "taxane", True), 20), (("docetaxel", "taxane", True), 10),
                       (("doxorubicin", "anthracycline", True), 15), (("epirubicin", "anthracycline", True), 8),
                       (("capecitabine", "antimetabolite", True), 18), (("cyclophosphamide", "alkylator", True), 10),
                       (("mitomycin", "mitomycin", True), 7), (("eribulin", "other", True), 7),
                       (("trastuzumab", "other", False), 5)],
            "lung": [(("carboplatin", "platinum", True), 30), (("cisplatin", "platinum", True), 20),
                     (("pemetrexed", "antimetabolite", True), 20), (("gemcitabine", "antimetabolite", True), 10),
                     (("paclitaxel", "taxane", True), 10), (("pembrolizumab", "other", False), 10)],
            "renal": [(("sunitinib", "other", True), 50), (("nivolumab", "other", False), 50)],
            "thyroid": [(("lenvatinib", "other", False), 70), (("doxorubicin", "anthracycline", True), 30)],
            "myeloma": [(("melphalan", "alkylator", True), 35), (("bortezomib", "other", True), 30),
                        (("carmustine", "nitrosourea", True), 15), (("cyclophosphamide", "alkylator", True), 20)],
            "other": [(("mitomycin", "mitomycin", True), 25), (("lomustine", "nitrosourea", True), 20),
                      (("cisplatin", "platinum", True), 20), (("gemcitabine", "antimetabolite", True), 20),
                      (("fluorouracil", "antimetabolite", True), 15)],
        }
        options = catalogue[self.site]
        count = pick(rng, [(0, 35), (1, 35), (2, 20), (3, 10)])
        entries: list[Doc] = []
        used: set[str] = set()
        for position in range(count):
            agent, klass, myelosuppressive = pick(rng, options)
            if agent in used:
                continue
            used.add(agent)
            entries.append(self.chemo_entry(agent, klass, myelosuppressive, latest=position == 0))
        return entries

    def prostate_chemotherapy(self) -> list[Doc]:
        rng = self.rng
        entries: list[Doc] = []
        if chance(rng, 0.05 if self.crpc else 0.0):
            # Tu 2001 induction: ketoconazole/doxorubicin alternating with estramustine/vinblastine.
            days = rng.randint(14, 70)
            response = pick(rng, [("stable", 45), ("response", 45), ("progression", 10)])
            for agent, klass in (("doxorubicin", "anthracycline"), ("estramustine", "alkylator"),
                                 ("vinblastine", "other")):
                entries.append({"agent": agent, "class": klass, "myelosuppressive": True,
                                "last_dose_date": self.day(days + rng.randint(0, 7)), "ongoing": False,
                                "best_response": response})
            return entries
        if chance(rng, 0.55 if self.crpc else 0.3):
            entries.append(self.chemo_entry("docetaxel", "taxane", True, latest=True))
            if self.crpc and not entries[0]["ongoing"] and chance(rng, 0.2):
                entries.insert(0, self.chemo_entry("cabazitaxel", "taxane", True, latest=True))
                previous = dt.date.fromisoformat(entries[0]["last_dose_date"]) - dt.timedelta(days=rng.randint(60, 400))
                entries[1]["last_dose_date"] = previous.isoformat()
        return entries

    def chemo_entry(self, agent: str, klass: str, myelosuppressive: bool, *, latest: bool) -> Doc:
        rng = self.rng
        if self.clean:
            ongoing, days = False, rng.randint(60, 1500)
        elif latest:
            delayed_nadir = klass in {"nitrosourea", "mitomycin"}
            edge_weight, edges = (45, [40, 41, 42, 43]) if delayed_nadir else (26, [27, 28, 29, 41, 42, 43])
            kind = pick(rng, [("ongoing", 14), ("edge", edge_weight), ("recent", 20), ("months", 20), ("old", 20)])
            ongoing = kind == "ongoing"
            days = {
                "ongoing": rng.randint(0, 21),
                "edge": rng.choice(edges),
                "recent": rng.randint(1, 26),
                "months": rng.randint(30, 120),
                "old": rng.randint(121, 1500),
            }[kind]
        else:
            ongoing, days = False, rng.randint(30, 1500)
        entry: Doc = {"agent": agent, "class": klass, "myelosuppressive": myelosuppressive,
                       "last_dose_date": self.day(days), "ongoing": ongoing}
        if chance(rng, 0.8):
            entry["best_response"] = pick(rng, [("response", 30), ("stable", 30), ("progression", 30),
                                                 ("unknown", 10)])
        return entry

    def radionuclides(self) -> list[Doc]:
        rng = self.rng
        entries: list[Doc] = []
        if self.crpc and not self.clean and chance(rng, 0.3):
            entries.extend(self.ra223_course())
            # Marrow suppression is likelier mid-course: some counts fall below the subsequent-dose limits (ELIG-RA-07).
            self.marrow_suppressed = chance(rng, 0.25)
        beta_p = 0.1 if self.clean else 0.18
        if (self.site in {"prostate", "breast"} and chance(rng, beta_p)) or chance(rng, 0.02):
            agent = pick(rng, [("sr89", 50), ("sm153", 35), ("re186", 5), ("re188", 5), ("p32", 5)])
            if self.clean:
                days = rng.randint(200, 1200)
            else:
                days = pick(rng, [(rng.choice([55, 56, 57, 83, 84, 85, 89, 90, 91]), 30),
                                   (rng.randint(14, 200), 50), (rng.randint(201, 1200), 20)])
            activity = {"sr89": 148, "sm153": round(37 * self.weight), "re186": 1295, "re188": 3300, "p32": 370}
            entry: Doc = {"agent": agent, "date": self.day(days)}
            if chance(rng, 0.8):
                entry["activity_MBq"] = activity[agent]
            if chance(rng, 0.7):
                entry["response"] = chance(rng, 0.65)
            if agent == "sr89" and chance(rng, 0.25):
                entries.append({"agent": "sr89", "date": self.day(days + rng.randint(90, 250)), "activity_MBq": 148,
                                "response": True})
            entries.append(entry)
        return entries

    def ra223_course(self) -> list[Doc]:
        rng = self.rng
        injections = pick(rng, [(1, 10), (2, 10), (3, 10), (4, 10), (5, 10), (6, 14)])
        since_last = pick(rng, [(rng.randint(7, 27), 35), (28, 10), (rng.randint(29, 55), 30), (56, 5),
                                 (rng.randint(57, 400), 20)])
        activity = round(0.055 * self.weight, 2)
        dates: list[int] = [since_last]
        for _ in range(injections - 1):
            dates.append(dates[-1] + (28 if chance(rng, 0.7) else rng.randint(29, 42)))
        entries: list[Doc] = []
        for days in reversed(dates):
            entry: Doc = {"agent": "ra223", "date": self.day(days)}
            if chance(rng, 0.6):
                entry["activity_MBq"] = activity
            entries.append(entry)
        return entries

    def ebrt(self) -> list[Doc]:
        rng = self.rng
        entries: list[Doc] = []
        count = pick(rng, [(0, 60), (1, 30), (2, 10)])
        for _ in range(count):
            technique = pick(rng, [("conventional", 75), ("sbrt", 10), ("hemibody_upper", 7), ("hemibody_lower", 8)])
            if self.clean and technique.startswith("hemibody"):
                technique = "conventional"
            if technique.startswith("hemibody"):
                site = "upper hemibody" if technique == "hemibody_upper" else "lower hemibody"
                dose, fractions = (6, 1) if technique == "hemibody_upper" else (8, 1)
                days = rng.randint(7, 365)
            else:
                unpainful = [s for s in _BODY_SITES if s not in self.painful_sites]
                at_painful_site = bool(self.painful_sites) and not self.clean and chance(rng, 0.6)
                site = rng.choice(self.painful_sites if at_painful_site else unpainful)
                if technique == "sbrt":
                    dose, fractions = pick(rng, [((16, 1), 20), ((24, 2), 40), ((27, 3), 20), ((35, 5), 20)])
                else:
                    dose, fractions = pick(rng, [((8, 1), 50), ((20, 5), 20), ((30, 10), 20), ((24, 6), 10)])
                days = rng.randint(31, 900) if self.clean else pick(rng, [(rng.randint(3, 29), 20), (30, 5),
                                                                           (rng.randint(31, 900), 75)])
            entries.append({"date": self.day(days), "site": site, "dose_Gy": dose, "fractions": fractions,
                            "technique": technique})
        entries.sort(key=lambda e: e["date"])
        return entries

    def bone_health_agents(self) -> list[Doc]:
        rng = self.rng
        indicated = self.site in {"breast", "myeloma"} or self.crpc
        if not chance(rng, 0.45 if indicated else 0.15):
            return []
        weights = [("denosumab", 50), ("zoledronic_acid", 40), ("pamidronate", 4), ("ibandronate", 3),
                   ("clodronate", 3)]
        if self.site == "myeloma":
            weights = [("zoledronic_acid", 40), ("pamidronate", 30), ("denosumab", 20), ("clodronate", 10)]
        agent = pick(rng, weights)
        start = rng.randint(60, 1200)
        entries: list[Doc] = []
        if chance(rng, 0.12):
            previous = "zoledronic_acid" if agent != "zoledronic_acid" else "pamidronate"
            previous_start = start + rng.randint(90, 700)
            entries.append({"agent": previous, "start_date": self.day(previous_start),
                            "last_dose_date": self.day(start + rng.randint(14, 60)), "ongoing": False})
        entries.append({"agent": agent, "start_date": self.day(start),
                        "last_dose_date": self.day(rng.randint(1, min(start, 35))), "ongoing": True})
        if not self.clean and chance(rng, 0.04):
            second = "zoledronic_acid" if agent == "denosumab" else "denosumab"
            entries.append({"agent": second, "start_date": self.day(rng.randint(1, 60)),
                            "last_dose_date": self.day(rng.randint(0, 20)), "ongoing": True})
        self.has_bisphosphonate = any(e["ongoing"] and e["agent"] != "denosumab" for e in entries)
        return entries


def _cells(value_10e9_l: float, unit: str, decimals: int) -> Doc:
    if unit == "/uL":
        return {"value": round(value_10e9_l * 1000), "unit": unit}
    value: float = round(value_10e9_l, decimals) if decimals else round(value_10e9_l)
    return {"value": value, "unit": unit}


def _creatinine(mg_dl: float, unit: str) -> Doc:
    if unit == "umol/L":
        return {"value": round(mg_dl * 88.4), "unit": unit}
    return {"value": round(mg_dl, 2), "unit": unit}
