# The card's hardware, reached only through MicroPython's `machine` module (docs/card-hardware.md).
# Pin names follow the board's schematic: RINGn (ring detector), HOOKn (hook relay), POLn
# (polarity detector), LOOPn (loop-current sense ADC), LEDn, LED_STATUS. The audio of all eight
# lines is one PCM highway to the line-interface chips (DAAs): 8 kHz frames of eight G.711 octets,
# line n in time slot n; each DAA does its own companding, the card only moves octets.
import machine

FW_VERSION = (1, 1, 0)
BOARD_ID = b"BNLC-8FX"
CHANNELS = 8
BAUD = 921600
PCM_RATE = 8000
# one 8 kHz highway frame = one I2S stereo frame of two 32-bit words = 8 slots of 8 bits
# (bit clock 512 kHz); a 20 ms block is 160 frames, 1280 bytes; ibuf holds four of them
PCM_BITS = 32
PCM_IBUF = 5120
I2S_TX = 0  # DX: card -> lines; drives the highway's bit clock (PCM_CLK) and frame sync (PCM_FS)
I2S_RX = 1  # DR: lines -> card, on the same clock
# the firmware images live on an SPI NOR chip, a Winbond W25Q16JV (spi_nor.py), on SPI 1 with
# its chip select on FLASH_CS: 2 MiB, 4 KiB erase sectors, 256-byte program pages
FLASH_SPI = 1
FLASH_HZ = 20000000
FLASH_SIZE = 2 * 1024 * 1024
FLASH_BLOCK = 4096
FLASH_PAGE = 256


class Hardware:
    def __init__(self):
        self.uid = machine.unique_id()

    def pin(self, name, is_input):
        if is_input:
            return machine.Pin(name, machine.Pin.IN)
        return machine.Pin(name, machine.Pin.OUT, value=0)

    def adc(self, name):
        return machine.ADC(machine.Pin(name))

    def highway(self):
        # -> (rx, tx): the two I2S units of the PCM highway, one per direction
        sck = machine.Pin("PCM_CLK")
        ws = machine.Pin("PCM_FS")
        tx = machine.I2S(I2S_TX, sck=sck, ws=ws, sd=machine.Pin("PCM_DX"), mode=machine.I2S.TX,
                         bits=PCM_BITS, format=machine.I2S.STEREO, rate=PCM_RATE, ibuf=PCM_IBUF)
        rx = machine.I2S(I2S_RX, sck=sck, ws=ws, sd=machine.Pin("PCM_DR"), mode=machine.I2S.RX,
                         bits=PCM_BITS, format=machine.I2S.STEREO, rate=PCM_RATE, ibuf=PCM_IBUF)
        return rx, tx

    def uart(self, baud):
        # 16 KB out (~180 ms at 921,600 baud): a late tick's frames wait instead of being cut
        return machine.UART(0, baudrate=baud, rxbuf=8192, txbuf=16384)

    def watchdog(self, ms):
        return machine.WDT(timeout=ms)

    def watchdog_reset(self):
        # whether the last reset was the watchdog's (the updater reverts a trial that ended so)
        return machine.reset_cause() == machine.WDT_RESET

    def flash(self):
        from .spi_nor import SpiNor

        cs = machine.Pin("FLASH_CS", machine.Pin.OUT, value=1)
        spi = machine.SPI(FLASH_SPI, baudrate=FLASH_HZ, polarity=0, phase=0)
        return SpiNor(spi, cs, FLASH_SIZE, FLASH_BLOCK, FLASH_PAGE)

    def reset(self):
        machine.reset()
