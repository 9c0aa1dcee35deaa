"""Patient documents: reading, validation against the contract, and the facts the rules see."""

from .facts import FactTable, FactValue, build_facts
from .load import PatientDocument, load_patient, parse_patient

__all__ = ["FactTable", "FactValue", "PatientDocument", "build_facts", "load_patient", "parse_patient"]
