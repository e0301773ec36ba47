"""Host-side drivers: the line card's serial link and telephony DSP."""
