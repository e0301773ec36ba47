# The card's hardware, reached only through MicroPython's `machine` module. Pin names follow the
# board's schematic: RINGn (ring detector), HOOKn (hook relay), POLn (polarity detector),
# LOOPn (loop-current sense ADC), LEDn, LED_STATUS; PCM audio n is the codec's companded
# 8 kHz interface for line n (the codec does G.711, the card moves octets).
import machine

FW_VERSION = (1, 0, 0)
BOARD_ID = b"BNLC-8FX"
CHANNELS = 8
BAUD = 921600


class Hardware:
    def __init__(self):
        self.uid = machine.unique_id()

    def pin(self, name, is_input):
        if is_input:
            return machine.Pin(name, machine.Pin.IN)
        return machine.Pin(name, machine.Pin.OUT, value=0)

    def adc(self, name):
        return machine.ADC(machine.Pin(name))

    def pcm(self, ch, receive):
        # line n's audio from (DR) or to (DX) the codec, one I2S unit per direction
        return machine.I2S(2 * ch + (0 if receive else 1), sck=machine.Pin("PCM_CLK"),
                           ws=machine.Pin("PCM_FS"),
                           sd=machine.Pin(("PCM_DR%d" if receive else "PCM_DX%d") % ch),
                           mode=machine.I2S.RX if receive else machine.I2S.TX,
                           bits=8, format=machine.I2S.MONO, rate=8000, ibuf=1280)

    def uart(self, baud):
        # 16 KB out (~180 ms at 921,600 baud): a late tick's frames wait instead of being cut
        return machine.UART(0, baudrate=baud, rxbuf=8192, txbuf=16384)

    def watchdog(self, ms):
        return machine.WDT(timeout=ms)

    def reset(self):
        machine.reset()
