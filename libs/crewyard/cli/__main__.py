"""python -m crewyard.cli"""

from . import main

main()
