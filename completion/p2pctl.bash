# bash completion for p2pctl(1)

# File or directory names (-f / -d), with bash-completion's _filedir when
# it is there.
_p2pctl_files()
{
	if declare -F _filedir >/dev/null; then
		if [[ $1 == -d ]]; then _filedir -d; else _filedir; fi
	else
		local IFS=$'\n'
		COMPREPLY=($(compgen "$1" -- "$cur"))
	fi
}

_p2pctl()
{
	local cur prev words cword
	if declare -F _init_completion >/dev/null; then
		_init_completion || return
	else
		# without the bash-completion package: the plain bash variables
		words=("${COMP_WORDS[@]}")
		cword=$COMP_CWORD
		cur=${COMP_WORDS[COMP_CWORD]}
		prev=${COMP_WORDS[COMP_CWORD - 1]}
	fi

	local commands="register login logout status index ls search download transfers cancel pause resume set"
	local global="-s --socket -p --peer --json -q --quiet -t --timeout -h --help -V --version"
	local rundir=${P2P_RUNDIR:-/run/p2p}

	case $prev in
	-s|--socket)
		_p2pctl_files -f
		return ;;
	-p|--peer)
		local socks=("$rundir"/*.sock)
		[[ -e ${socks[0]} ]] || return
		socks=("${socks[@]##*/}")
		COMPREPLY=($(compgen -W "${socks[*]%.sock}" -- "$cur"))
		return ;;
	--password-file)
		_p2pctl_files -f
		return ;;
	--to)
		_p2pctl_files -d
		return ;;
	-t|--timeout|--limit|--offset|--from|--exact)
		return ;;
	esac

	local i cmd=
	for ((i = 1; i < cword; i++)); do
		case ${words[i]} in
		-s|--socket|-p|--peer|-t|--timeout) ((i++)) ;;
		-*) ;;
		*) cmd=${words[i]}; break ;;
		esac
	done

	if [[ -z $cmd ]]; then
		if [[ $cur == -* ]]; then
			COMPREPLY=($(compgen -W "$global" -- "$cur"))
		else
			COMPREPLY=($(compgen -W "$commands" -- "$cur"))
		fi
		return
	fi

	# set KEY VALUE [KEY VALUE]: a key at even positions after "set"
	if [[ $cmd == set && $cur != -* ]]; then
		local j n=0
		for ((j = i + 1; j < cword; j++)); do
			[[ ${words[j]} == -* ]] || ((n++))
		done
		if ((n % 2 == 0)); then
			COMPREPLY=($(compgen -W "upload-rate download-rate" -- "$cur"))
		else
			COMPREPLY=($(compgen -W "unlimited" -- "$cur"))
		fi
		return
	fi

	local opts="--json -q --quiet -h --help"
	case $cmd in
	register|login) opts+=" --password-stdin --password-file" ;;
	search) opts+=" --exact --limit --offset" ;;
	download) opts+=" --from --to --force" ;;
	esac
	[[ $cur == -* ]] && COMPREPLY=($(compgen -W "$opts" -- "$cur"))
} && complete -F _p2pctl p2pctl
