//! What a user asks for, decided without I/O.
