"""Draft -> execute -> repair -> verify (the loop), the SQLite store every attempt and pair
lands in, and pairs -> training records (the dataset)."""
